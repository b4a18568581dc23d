//! Finding adapters and deciding which one counts as a GPU.
//!
//! wgpu also reports software rasterisers (Mesa's llvmpipe/lavapipe,
//! SwiftShader, WARP), usually with device type `Cpu`. They run the real
//! WGSL path, slowly, so `auto` never takes one unless the user allows it
//! (`--allow-software-gpu` or `ANYCORE_ALLOW_SOFTWARE_GPU=1`); tests allow
//! it to run every shader on machines without a GPU.

use serde::Serialize;

/// Names of well-known software adapters that may not say `Cpu` as their type.
const SOFTWARE_NAMES: &[&str] = &[
    "llvmpipe",
    "lavapipe",
    "swiftshader",
    "microsoft basic render driver",
];

/// A wgpu instance over the native backends (Vulkan, Metal, DX12), or the
/// ones `WGPU_BACKEND` names. The GL backend is left out by default: on
/// Linux it would list the same devices a second time.
pub fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
    desc.backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
    wgpu::Instance::new(desc)
}

/// Every adapter the instance finds.
pub fn enumerate(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    pollster::block_on(instance.enumerate_adapters(wgpu::Backends::all()))
}

/// Whether an adapter is a software rasteriser rather than a GPU.
pub fn is_software(info: &wgpu::AdapterInfo) -> bool {
    let name = info.name.to_lowercase();
    info.device_type == wgpu::DeviceType::Cpu || SOFTWARE_NAMES.iter().any(|s| name.contains(s))
}

/// Which adapters may be chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allow {
    /// Hardware GPUs only.
    Hardware,
    /// A hardware GPU, else a software adapter.
    Any,
    /// A software adapter only (to run the shaders on the CPU beside a
    /// hardware GPU, as `backend::compare` does).
    Software,
}

impl Allow {
    /// [`Allow::Any`] when software adapters are allowed, else
    /// [`Allow::Hardware`].
    pub fn software(allowed: bool) -> Self {
        if allowed { Allow::Any } else { Allow::Hardware }
    }
}

/// Preference among usable adapters (lower is better), or `None` if unusable.
fn rank(info: &wgpu::AdapterInfo, allow: Allow) -> Option<u8> {
    if is_software(info) {
        return (allow != Allow::Hardware).then_some(4);
    }
    if allow == Allow::Software {
        return None;
    }
    Some(match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        _ => 3,
    })
}

/// Picks the best usable adapter, or explains why there is none.
pub fn choose(adapters: Vec<wgpu::Adapter>, allow: Allow) -> Result<wgpu::Adapter, String> {
    let software: Vec<String> = adapters
        .iter()
        .map(|a| a.get_info())
        .filter(is_software)
        .map(|i| i.name)
        .collect();
    adapters
        .into_iter()
        .filter_map(|a| rank(&a.get_info(), allow).map(|r| (r, a)))
        .min_by_key(|(r, _)| *r)
        .map(|(_, a)| a)
        .ok_or_else(|| {
            if allow == Allow::Software {
                "no software GPU adapter found (scripts/install-deps.sh installs Mesa's)".to_owned()
            } else if software.is_empty() {
                "no GPU adapter found (install your GPU's Vulkan driver; on a machine \
                 without a GPU, scripts/install-deps.sh installs Mesa's software one)"
                    .to_owned()
            } else {
                format!(
                    "no hardware GPU adapter found; software adapter '{}' is present but \
                     only used when allowed (--allow-software-gpu or \
                     ANYCORE_ALLOW_SOFTWARE_GPU=1)",
                    software.join("', '")
                )
            }
        })
}

/// Whether `ANYCORE_ALLOW_SOFTWARE_GPU` asks for software adapters.
pub fn software_allowed_by_env() -> bool {
    std::env::var("ANYCORE_ALLOW_SOFTWARE_GPU")
        .map(|v| !matches!(v.trim(), "" | "0" | "false" | "no"))
        .unwrap_or(false)
}

/// What `anycore devices` shows for one adapter.
#[derive(Clone, Debug, Serialize)]
pub struct AdapterReport {
    /// Adapter name.
    pub name: String,
    /// Graphics API (vulkan, metal, dx12, gl).
    pub backend: String,
    /// discrete, integrated, virtual, cpu (software) or other.
    pub device_type: String,
    /// Driver name.
    pub driver: String,
    /// Driver version details.
    pub driver_info: String,
    /// Whether it is a software rasteriser.
    pub software: bool,
    /// Whether `--backend auto` would run on it, given the software setting.
    pub used_by_auto: bool,
    /// Limits that shape how jobs are split.
    pub limits: LimitsReport,
}

/// The limits that matter for compute.
#[derive(Clone, Debug, Serialize)]
pub struct LimitsReport {
    /// Largest storage binding in bytes.
    pub max_storage_buffer_binding_size: u64,
    /// Largest buffer in bytes.
    pub max_buffer_size: u64,
    /// Workgroups per dispatch dimension.
    pub max_compute_workgroups_per_dimension: u32,
    /// Invocations per workgroup.
    pub max_compute_invocations_per_workgroup: u32,
    /// Workgroup memory in bytes.
    pub max_compute_workgroup_storage_size: u32,
}

impl From<&wgpu::Limits> for LimitsReport {
    fn from(l: &wgpu::Limits) -> Self {
        LimitsReport {
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_buffer_size: l.max_buffer_size,
            max_compute_workgroups_per_dimension: l.max_compute_workgroups_per_dimension,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
        }
    }
}

/// Describes every adapter wgpu sees, marking the one `auto` would use.
pub fn reports(allow_software: bool) -> Vec<AdapterReport> {
    let adapters = enumerate(&instance());
    let best = adapters
        .iter()
        .enumerate()
        .filter_map(|(i, a)| rank(&a.get_info(), Allow::software(allow_software)).map(|r| (r, i)))
        .min()
        .map(|(_, i)| i);
    adapters
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let info = a.get_info();
            AdapterReport {
                software: is_software(&info),
                used_by_auto: Some(i) == best,
                backend: info.backend.to_string(),
                device_type: device_type_name(info.device_type).into(),
                limits: LimitsReport::from(&a.limits()),
                name: info.name,
                driver: info.driver,
                driver_info: info.driver_info,
            }
        })
        .collect()
}

/// Short lowercase name of a device type.
pub fn device_type_name(t: wgpu::DeviceType) -> &'static str {
    match t {
        wgpu::DeviceType::DiscreteGpu => "discrete",
        wgpu::DeviceType::IntegratedGpu => "integrated",
        wgpu::DeviceType::VirtualGpu => "virtual",
        wgpu::DeviceType::Cpu => "cpu",
        wgpu::DeviceType::Other => "other",
    }
}
