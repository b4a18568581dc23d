//! A registered kernel's WGSL, checked against its signature before any
//! device sees it: naga parses and validates it, then its entry point and
//! every binding of group 0 are compared with what the GPU backend will
//! bind (see the parent module's docs), so that a wrong shader is an error
//! at registration, naming the binding, instead of a failed job later.

use wgpu::naga::{self, AddressSpace, ArraySize, ScalarKind, StorageAccess, TypeInner};

use crate::error::{Error, Result};
use crate::tensor::DType;

/// What the backend binds: the inputs, the outputs, then the uniform with
/// the parameters.
pub(super) struct Expected<'a> {
    pub inputs: Vec<(&'a str, DType)>,
    pub outputs: Vec<(&'a str, DType)>,
    pub params: Vec<&'a str>,
}

/// Bytes of the uniform before the parameters: `dims: vec4<u32>`, `len: u32`.
const HEADER: u32 = 20;

/// Checks `source` and returns the workgroup size of `entry`.
pub(super) fn check(expected: &Expected, source: &str, entry: &str) -> Result<[u32; 3]> {
    let invalid = |e: String| Error::bad(format!("its WGSL does not validate:\n{e}"));
    let module =
        naga::front::wgsl::parse_str(source).map_err(|e| invalid(e.emit_to_string(source)))?;
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .map_err(|e| invalid(e.emit_to_string(source)))?;

    // The backend sets no pipeline constants.
    if let Some((_, o)) = module.overrides.iter().find(|(_, o)| o.init.is_none()) {
        return Err(Error::bad(format!(
            "its WGSL's override '{}' has no default; registered kernels set no pipeline \
             constants",
            o.name.as_deref().unwrap_or("?")
        )));
    }
    let (index, workgroup) = entry_point(&module, entry)?;
    let uses = info.get_entry_point(index);
    // Not every driver is asked by wgpu whether it has this much (llvmpipe
    // runs 1 MiB): refused here, past what every device has.
    let shared: u64 = module
        .global_variables
        .iter()
        .filter(|(h, v)| v.space == AddressSpace::WorkGroup && !uses[*h].is_empty())
        .map(|(_, v)| u64::from(module.types[v.ty].inner.size(module.to_ctx())))
        .sum();
    let most = wgpu::Limits::default().max_compute_workgroup_storage_size;
    if shared > u64::from(most) {
        return Err(Error::bad(format!(
            "entry point '{entry}' uses {shared} bytes of workgroup memory; not every device \
             has more than {most}"
        )));
    }
    let uniform_binding = (expected.inputs.len() + expected.outputs.len()) as u32;
    let mut found = vec![false; uniform_binding as usize + 1];
    for (handle, var) in module.global_variables.iter() {
        let Some(binding) = var.binding else {
            continue;
        };
        let name = var.name.as_deref().unwrap_or("?");
        let at = format!(
            "'{name}' (@group({}) @binding({}))",
            binding.group, binding.binding
        );
        let ours = binding.group == 0 && binding.binding <= uniform_binding;
        if !ours && uses[handle].is_empty() {
            continue; // another entry point's
        }
        if !ours {
            return Err(Error::bad(format!(
                "{at} is not bound: the kernel binds group 0 only, {}",
                layout(expected)
            )));
        }
        let b = binding.binding as usize;
        found[b] = true;
        let inner = &module.types[var.ty].inner;
        let tensor = match expected.inputs.get(b) {
            Some(&(arg, dtype)) => Some((format!("input '{arg}'"), dtype, false)),
            None => expected
                .outputs
                .get(b - expected.inputs.len())
                .map(|&(arg, dtype)| (format!("output '{arg}'"), dtype, true)),
        };
        match tensor {
            Some((what, dtype, output)) => {
                storage(&module, &at, &what, var.space, inner, dtype, output)
                    .map_err(|e| e.context_after(&layout(expected)))?;
            }
            None => uniform(&module, &at, var.space, inner, &expected.params)?,
        }
    }
    let names = expected
        .inputs
        .iter()
        .map(|(n, _)| format!("input '{n}'"))
        .chain(
            expected
                .outputs
                .iter()
                .map(|(n, _)| format!("output '{n}'")),
        );
    for (b, what) in names.enumerate() {
        if !found[b] {
            return Err(Error::bad(format!(
                "its WGSL declares no @group(0) @binding({b}) for {what}: {}",
                layout(expected)
            )));
        }
    }
    if !expected.params.is_empty() && !found[uniform_binding as usize] {
        return Err(Error::bad(format!(
            "its WGSL declares no uniform at @binding({uniform_binding}) for its parameters: {}",
            layout(expected)
        )));
    }
    Ok(workgroup)
}

/// The compute entry point `entry`'s index and workgroup size, within
/// what every WebGPU device allows.
fn entry_point(module: &naga::Module, entry: &str) -> Result<(usize, [u32; 3])> {
    let Some((index, ep)) = module
        .entry_points
        .iter()
        .enumerate()
        .find(|(_, e)| e.name == entry && e.stage == naga::ShaderStage::Compute)
    else {
        let names: Vec<&str> = module
            .entry_points
            .iter()
            .filter(|e| e.stage == naga::ShaderStage::Compute)
            .map(|e| e.name.as_str())
            .collect();
        return Err(Error::bad(format!(
            "its WGSL has no compute entry point '{entry}' (it has: {})",
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )));
    };
    if ep.workgroup_size_overrides.is_some() {
        return Err(Error::bad(format!(
            "entry point '{entry}': its @workgroup_size must be constants, not overrides"
        )));
    }
    let size = ep.workgroup_size;
    let limits = wgpu::Limits::default();
    let most = [
        limits.max_compute_workgroup_size_x,
        limits.max_compute_workgroup_size_y,
        limits.max_compute_workgroup_size_z,
    ];
    let total = size.iter().map(|&s| u64::from(s)).product::<u64>();
    if size.iter().zip(most).any(|(&s, m)| s > m)
        || total > u64::from(limits.max_compute_invocations_per_workgroup)
    {
        return Err(Error::bad(format!(
            "entry point '{entry}': @workgroup_size({}, {}, {}) is more than every device \
             allows ({}, {}, {}, and {} invocations in all)",
            size[0],
            size[1],
            size[2],
            most[0],
            most[1],
            most[2],
            limits.max_compute_invocations_per_workgroup
        )));
    }
    Ok((index, size))
}

fn layout(expected: &Expected) -> String {
    let mut parts = Vec::new();
    let mut b = 0;
    for (n, d) in &expected.inputs {
        parts.push(format!("{b}: var<storage, read> {n}: array<{d}>"));
        b += 1;
    }
    for (n, d) in &expected.outputs {
        parts.push(format!("{b}: var<storage, read_write> {n}: array<{d}>"));
        b += 1;
    }
    let params: String = expected
        .params
        .iter()
        .map(|p| format!(", {p}: f32"))
        .collect();
    parts.push(format!(
        "{b}: var<uniform> of struct {{ dims: vec4<u32>, len: u32{params} }}"
    ));
    format!("the bindings are {}", parts.join("; "))
}

fn scalar_kind(dtype: DType) -> ScalarKind {
    match dtype {
        DType::F32 => ScalarKind::Float,
        DType::I32 => ScalarKind::Sint,
        DType::U32 | DType::U8 => ScalarKind::Uint,
    }
}

/// Checks an input's or output's binding: storage, readable only for
/// inputs, writable for outputs, a runtime-sized array of the dtype's
/// scalars (atomics too, for outputs). Not vectors: a tensor of 6 f32 is
/// no whole number of `vec4`, and `vec3` is 16 bytes apart.
fn storage(
    module: &naga::Module,
    at: &str,
    what: &str,
    space: AddressSpace,
    inner: &TypeInner,
    dtype: DType,
    output: bool,
) -> Result<()> {
    let want = if output { "read_write" } else { "read" };
    let access_ok = match space {
        AddressSpace::Storage { access } => access.contains(StorageAccess::STORE) == output,
        _ => false,
    };
    if !access_ok {
        return Err(Error::bad(format!(
            "{at} is {what}: it must be var<storage, {want}>"
        )));
    }
    let element = match inner {
        TypeInner::Array {
            base,
            size: ArraySize::Dynamic,
            ..
        } => match module.types[*base].inner {
            TypeInner::Scalar(s) => Some(s),
            TypeInner::Atomic(s) if output => Some(s),
            _ => None,
        },
        _ => None,
    };
    if element.is_none_or(|s| s.kind != scalar_kind(dtype) || s.width != 4) {
        return Err(Error::bad(format!(
            "{at} is {what}, {dtype}: it must be a runtime-sized array<{dtype}>{}",
            if output { " (or of atomics)" } else { "" }
        )));
    }
    Ok(())
}

/// Checks the uniform: `dims: vec4<u32>`, then `len: u32`, then one `f32`
/// per parameter, in order (members past the header are optional when the
/// kernel has no parameters).
fn uniform(
    module: &naga::Module,
    at: &str,
    space: AddressSpace,
    inner: &TypeInner,
    params: &[&str],
) -> Result<()> {
    let want: String = params.iter().map(|p| format!(", {p}: f32")).collect();
    let wrong = |why: String| {
        Error::bad(format!(
            "{at} is the uniform, struct {{ dims: vec4<u32>, len: u32{want} }}: {why}"
        ))
    };
    if space != AddressSpace::Uniform {
        return Err(wrong("it must be var<uniform>".into()));
    }
    let TypeInner::Struct { members, span } = inner else {
        return Err(wrong("it is not a struct".into()));
    };
    let is = |i: usize, expect: &dyn Fn(&TypeInner) -> bool| {
        members
            .get(i)
            .is_some_and(|m| expect(&module.types[m.ty].inner))
    };
    let u32_scalar = naga::Scalar::U32;
    let dims = |t: &TypeInner| matches!(t, TypeInner::Vector { size: naga::VectorSize::Quad, scalar } if *scalar == u32_scalar);
    if !is(0, &dims) || members[0].offset != 0 {
        return Err(wrong("its first member must be vec4<u32>".into()));
    }
    let len = |t: &TypeInner| *t == TypeInner::Scalar(u32_scalar);
    if members.len() > 1 && (!is(1, &len) || members[1].offset != 16) {
        return Err(wrong("its second member must be u32, at byte 16".into()));
    }
    let f32_scalar = TypeInner::Scalar(naga::Scalar::F32);
    for (i, p) in params.iter().enumerate() {
        let m = 2 + i;
        if !is(m, &|t| *t == f32_scalar) || members[m].offset != HEADER + 4 * i as u32 {
            return Err(wrong(format!(
                "member {m} must be f32, for parameter '{p}'"
            )));
        }
        // Named for another parameter: the order is wrong, and the values
        // would land in each other's places.
        if let Some(name) = members[m]
            .name
            .as_deref()
            .filter(|n| n != p && params.contains(n))
        {
            return Err(wrong(format!(
                "member {m} is '{name}', but parameter {} is '{p}': the members follow the \
                 parameters' order",
                i + 1
            )));
        }
    }
    if members.len() > 2 + params.len() {
        return Err(wrong(format!(
            "it has {} members, more than the kernel's parameters",
            members.len()
        )));
    }
    // What the backend binds (the header and the parameters, in whole
    // 16 bytes) must hold the struct.
    let bound = (HEADER + 4 * params.len() as u32).next_multiple_of(16);
    if *span > bound {
        return Err(wrong(format!(
            "it is {span} bytes (padded by @size or @align?), more than the {bound} bound"
        )));
    }
    Ok(())
}
