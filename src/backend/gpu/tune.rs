//! Choosing among the matmul shader's variants on the card in use.
//!
//! `shaders/matmul.wgsl` has several entry points ([`VARIANTS`]: tile
//! sizes, depth of the k slices, scalar or `vec4` loads, one or two tile
//! buffers). Which is fastest depends on the card, its driver and the shape
//! of the product, and no rule read off one card holds on another — so, as
//! CubeCL's autotune does, the first matmul of a *shape class* on a
//! hardware GPU times every variant that applies and keeps the fastest:
//!
//! - **Shape class** ([`ShapeClass`]): m, k and n each rounded up to a power
//!   of two between 64 and 4096, plus whether the `vec4` variants apply
//!   (k and n multiples of 4). Products in one class behave alike.
//! - **Timing**: on the job's own `a` and `b` (already on the device, so
//!   nothing extra is uploaded), with m, k, n capped at [`TUNE_CAP`] and a
//!   scratch output, so the job's poisoned output is left alone. Each
//!   variant runs once (compiling it), the GPU then works for [`WARM_UP`]
//!   so its clocks are up, and the variants are timed in [`ROUNDS`] turns,
//!   each as a batch of dispatches in one submission long enough to time
//!   (about [`TARGET_MS`]); each variant's best turn counts. The clock is the device's (timestamp queries) where the
//!   adapter has one, else the host's submit-and-wait. A variant more than
//!   [`GIVE_UP`] times slower than the best so far on a long warm-up is not
//!   timed further, and one that fails to build or run (inside its own
//!   error scope) is left out instead of failing the job.
//! - **Cache**: the winner per class is kept in memory and written to
//!   `matmul-variants.json` beside the cost model
//!   (the folder of [`crate::cache::dir`]), under a key naming
//!   the adapter, its driver, anycore's version and a hash of the shader
//!   source, so later processes skip tuning and a changed shader or driver
//!   tunes again. A missing, unreadable or corrupt file is ignored (and
//!   rewritten by the next tuning), never an error.
//! - **Software adapters** (llvmpipe and friends, [`adapter::is_software`])
//!   are not tuned: their timings say nothing about GPUs, and the tests that
//!   use them should not spend time on it. They get [`default_variant`].
//!   `ANYCORE_MATMUL_TUNE` overrides this: `always` tunes them too (a test
//!   runs the whole tuning path on llvmpipe that way), `off` never tunes
//!   (cached choices still count, else the default).
//! - **Forcing**: `ANYCORE_MATMUL_VARIANT=<name>` picks a variant for the
//!   whole process (where it does not apply to a shape, the choice falls
//!   back as usual); [`force_variant`] picks one for the calling thread
//!   only, and refuses shapes it does not apply to — the tests use it to run
//!   every variant on llvmpipe.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::adapter::{self, AdapterReport};
use super::exec::Exec;
use super::matmul::{Problem, Shape, pass};
use super::{GpuBackend, lock};
use crate::error::{Error, Result};
use crate::kernel::Kernel;
use crate::kernel::matmul::{SHADER, VARIANTS, Variant, WORKGROUP, variant, vec4_shape};

/// Tuning runs cap m, k and n at this (a 4096³ product is a few
/// milliseconds on a large GPU; larger ones rank variants the same way).
pub const TUNE_CAP: usize = 4096;
/// Milliseconds one timed batch of dispatches should last.
pub const TARGET_MS: f64 = 10.0;
/// Most dispatches in one timed batch (tiny products).
const MAX_BATCH: usize = 64;
/// How long the GPU works before timing starts, so its clocks are up.
const WARM_UP: std::time::Duration = std::time::Duration::from_millis(150);
/// Turns in which every variant is timed once; each keeps its best.
const ROUNDS: usize = 3;
/// A variant this many times slower than the best so far on its warm-up
/// run is not timed further...
pub const GIVE_UP: f64 = 4.0;
/// ...when that run took longer than this many milliseconds (shorter runs
/// cost little to time, and a first dispatch's own costs could make a fast
/// variant look slow).
const GIVE_UP_MS: f64 = 5.0;
/// Layout version of the cache file; other versions are ignored.
const FORMAT: u32 = 1;
/// The environment variable that forces a variant for the whole process.
pub const ENV_VARIANT: &str = "ANYCORE_MATMUL_VARIANT";
/// The environment variable that says when to tune: `auto` (hardware
/// adapters only, the default), `always` or `off`.
pub const ENV_TUNE: &str = "ANYCORE_MATMUL_TUNE";

/// When a [`Tuner`] times variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// On hardware adapters; software ones get the default.
    Auto,
    /// Also on software adapters.
    Always,
    /// Never: cached choices, else the default.
    Off,
}

impl Mode {
    /// From `ANYCORE_MATMUL_TUNE` (unknown values are logged, then `Auto`).
    fn from_env() -> Mode {
        match std::env::var(ENV_TUNE).unwrap_or_default().trim() {
            "" | "auto" => Mode::Auto,
            "always" | "1" => Mode::Always,
            "off" | "0" => Mode::Off,
            other => {
                log::warn!("{ENV_TUNE}={other}: expected auto, always or off; using auto");
                Mode::Auto
            }
        }
    }
}

/// Products that behave alike: each dimension rounded up to a power of two
/// in 64..=4096, and whether `k` and `n` allow the `vec4` variants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShapeClass {
    m: u32,
    k: u32,
    n: u32,
    vec4: bool,
}

impl ShapeClass {
    /// The class of an `m×k` by `k×n` product.
    pub fn of(m: usize, k: usize, n: usize) -> ShapeClass {
        let bucket = |x: usize| x.max(1).next_power_of_two().clamp(64, 4096) as u32;
        ShapeClass {
            m: bucket(m),
            k: bucket(k),
            n: bucket(n),
            vec4: vec4_shape(k, n),
        }
    }

    /// `MxKxN/vec4` or `MxKxN/any`, the key in the cache file.
    pub fn label(&self) -> String {
        let loads = if self.vec4 { "vec4" } else { "any" };
        format!("{}x{}x{}/{loads}", self.m, self.k, self.n)
    }
}

/// A tuned choice for one shape class, as cached.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// The winning variant's name.
    pub variant: String,
    /// Milliseconds per product of every variant timed (left out: those
    /// that failed; given up on: their warm-up run).
    pub ms: BTreeMap<String, f64>,
    /// The product timed, `[m, k, n]`.
    pub shape: [usize; 3],
    /// `device` (timestamp queries) or `host` (submit and wait).
    pub clock: String,
}

/// The cache file: per adapter key, per shape class label, a choice.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CacheFile {
    format: u32,
    adapters: BTreeMap<String, BTreeMap<String, Choice>>,
}

impl CacheFile {
    /// Reads `path`. A missing file is an empty cache; an unreadable or
    /// corrupt one, or one of another format, is logged and also empty.
    pub fn load(path: &Path) -> CacheFile {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return CacheFile::default(),
            Err(e) => {
                log::warn!("ignoring matmul tuning cache {}: {e}", path.display());
                return CacheFile::default();
            }
        };
        match serde_json::from_str::<CacheFile>(&text) {
            Ok(file) if file.format == FORMAT => file,
            Ok(file) => {
                log::info!(
                    "ignoring matmul tuning cache {} (format {}, not {FORMAT})",
                    path.display(),
                    file.format
                );
                CacheFile::default()
            }
            Err(e) => {
                log::warn!(
                    "ignoring corrupt matmul tuning cache {}: {e}",
                    path.display()
                );
                CacheFile::default()
            }
        }
    }

    /// The choices cached for one adapter key.
    pub fn choices(&self, key: &str) -> BTreeMap<String, Choice> {
        self.adapters.get(key).cloned().unwrap_or_default()
    }

    /// Adds `choice` for `class` under `key` to the file at `path`, keeping
    /// what other processes and adapters wrote there. The file is replaced
    /// whole (written beside it, then renamed), so a reader never sees half
    /// of it.
    pub fn store(path: &Path, key: &str, class: &str, choice: &Choice) -> std::io::Result<()> {
        let mut file = CacheFile::load(path);
        file.format = FORMAT;
        file.adapters
            .entry(key.to_owned())
            .or_default()
            .insert(class.to_owned(), choice.clone());
        let text = serde_json::to_string_pretty(&file).expect("the cache serialises");
        crate::cache::write(path, &text)
    }
}

/// The tuning cache's path: `matmul-variants.json` in the cache folder
/// ([`crate::cache::dir`]: `$ANYCORE_CACHE_DIR`, `$XDG_CACHE_HOME/anycore`
/// or `~/.cache/anycore`), or `None` when there is no such folder.
pub fn cache_file() -> Option<PathBuf> {
    Some(crate::cache::dir()?.join("matmul-variants.json"))
}

/// The key under which an adapter's choices are cached: its name, API,
/// driver and driver version, anycore's version, and a hash of the shader
/// (so an edited shader is tuned again, also within one version).
pub fn adapter_key(name: &str, backend: &str, driver: &str, driver_info: &str) -> String {
    format!(
        "{name} | {backend} | {driver} {driver_info} | anycore {} | matmul.wgsl {:016x}",
        env!("CARGO_PKG_VERSION"),
        fnv1a(SHADER.source.as_bytes())
    )
}

/// FNV-1a, 64 bits: a hash that is the same in every build (std's hasher
/// makes no such promise).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Whether a variant fits a device with these limits.
fn fits(v: &Variant, workgroup_bytes: u32, invocations: u32) -> bool {
    let [x, y, z] = WORKGROUP;
    v.workgroup_bytes <= workgroup_bytes && x * y * z <= invocations
}

/// The untuned choice (software adapters, or when tuning fails): 64 tiles
/// for products whose output fits one such tile (less wasted work), 128
/// tiles otherwise; `vec4` loads where the shape allows them.
pub fn default_variant(m: usize, k: usize, n: usize) -> &'static Variant {
    let small = m.max(n) <= 64;
    let name = match (small, ShapeClass::of(m, k, n).vec4) {
        (true, true) => "mm64v4",
        (true, false) => "mm64",
        (false, true) => "mm128v4",
        (false, false) => "mm128",
    };
    variant(name).expect("default variants exist")
}

thread_local! {
    /// The variant [`force_variant`] set on this thread.
    static FORCED: Cell<Option<&'static Variant>> = const { Cell::new(None) };
}

/// While the returned guard lives, matmuls run on the calling thread use
/// the variant called `name` (and fail with a bad-input error for shapes it
/// does not apply to) instead of the tuned one. Errors for an unknown name.
pub fn force_variant(name: &str) -> Result<ForcedVariant> {
    let v = variant(name).ok_or_else(|| unknown_variant(name))?;
    Ok(ForcedVariant {
        previous: FORCED.with(|f| f.replace(Some(v))),
    })
}

/// Restores the previous forcing (if any) when dropped.
#[must_use = "the variant is forced only while the guard lives"]
#[derive(Debug)]
pub struct ForcedVariant {
    previous: Option<&'static Variant>,
}

impl Drop for ForcedVariant {
    fn drop(&mut self) {
        FORCED.with(|f| f.set(self.previous));
    }
}

fn unknown_variant(name: &str) -> Error {
    let known: Vec<&str> = VARIANTS.iter().map(|v| v.name).collect();
    Error::bad(format!(
        "unknown matmul variant '{name}' (known: {})",
        known.join(", ")
    ))
}

/// A [`GpuBackend`]'s matmul choices: forced, cached or tuned.
pub struct Tuner {
    key: String,
    software: bool,
    mode: Mode,
    env_forced: Option<&'static Variant>,
    cache: Option<PathBuf>,
    state: Mutex<State>,
    /// Held while tuning, so two threads do not tune the same class at once.
    tuning: Mutex<()>,
}

#[derive(Default)]
struct State {
    /// Whether the cache file has been read (on the first lookup).
    loaded: bool,
    choices: BTreeMap<String, Choice>,
}

impl Tuner {
    /// The tuner for an adapter: its key, whether it is software, and a
    /// variant forced by `ANYCORE_MATMUL_VARIANT` (an unknown name is
    /// logged and ignored).
    pub(super) fn new(info: &wgpu::AdapterInfo) -> Tuner {
        let env_forced = std::env::var(ENV_VARIANT)
            .ok()
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty() && v != "auto")
            .and_then(|name| {
                variant(&name)
                    .inspect(|v| log::info!("matmul variant forced to {} by {ENV_VARIANT}", v.name))
                    .or_else(|| {
                        log::warn!("{ENV_VARIANT}: {}; tuning instead", unknown_variant(&name));
                        None
                    })
            });
        Tuner {
            key: adapter_key(
                &info.name,
                &info.backend.to_string(),
                &info.driver,
                &info.driver_info,
            ),
            software: adapter::is_software(info),
            mode: Mode::from_env(),
            env_forced,
            cache: cache_file(),
            state: Mutex::default(),
            tuning: Mutex::default(),
        }
    }

    /// The key of this adapter's entries in the cache file.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether products are tuned here (by default on hardware adapters
    /// only; see `ANYCORE_MATMUL_TUNE`).
    pub fn tunes(&self) -> bool {
        match self.mode {
            Mode::Auto => !self.software,
            Mode::Always => true,
            Mode::Off => false,
        }
    }

    /// Whether the cache file counts here (not on software adapters unless
    /// they are tuned).
    fn uses_cache(&self) -> bool {
        self.tunes() || (self.mode == Mode::Off && !self.software)
    }

    /// The variant `ANYCORE_MATMUL_VARIANT` forces, if any.
    pub fn forced(&self) -> Option<&'static Variant> {
        self.env_forced
    }

    /// The choices known so far (from the cache file and this process), by
    /// shape class label.
    pub fn choices(&self) -> BTreeMap<String, Choice> {
        self.state().choices.clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        let mut state = lock(&self.state);
        if !state.loaded {
            state.loaded = true;
            if let Some(path) = self.uses_cache().then_some(self.cache.as_ref()).flatten() {
                state.choices = CacheFile::load(path).choices(&self.key);
            }
        }
        state
    }

    /// The variant for the product `job` (the whole product: it sets the
    /// shape class), tuning on `problem` (its first block) when this class
    /// has no choice yet.
    pub(super) fn choose(
        &self,
        gpu: &GpuBackend,
        job: Shape,
        problem: &Problem,
    ) -> Result<&'static Variant> {
        let Shape { m, k, n } = job;
        if let Some(v) = FORCED.with(Cell::get) {
            if !v.applies(k, n) {
                return Err(Error::bad(format!(
                    "matmul variant '{}' needs k and n to be multiples of 4 (and k > 0); \
                     this product is {m}×{k} by {k}×{n}",
                    v.name
                )));
            }
            return Ok(v);
        }
        if let Some(v) = self.env_forced.filter(|v| v.applies(k, n)) {
            return Ok(v);
        }
        let limits = &gpu.limits;
        let usable = |v: &&Variant| {
            v.applies(k, n)
                && fits(
                    v,
                    limits.max_compute_workgroup_storage_size,
                    limits.max_compute_invocations_per_workgroup,
                )
        };
        let class = ShapeClass::of(m, k, n).label();
        let cached = |state: &State| {
            let name = &state.choices.get(&class)?.variant;
            variant(name).filter(usable)
        };
        if let Some(v) = cached(&self.state()) {
            return Ok(v);
        }
        if !self.tunes() {
            return Ok(default_variant(m, k, n));
        }
        let _tuning = lock(&self.tuning);
        // Another thread may have tuned this class while we waited.
        if let Some(v) = cached(&self.state()) {
            return Ok(v);
        }
        // Only what also applies to the block timed (a narrow slab of b
        // may not take vec4 where the whole product does).
        let Shape { k: bk, n: bn, .. } = problem.shape;
        let candidates: Vec<&'static Variant> = VARIANTS
            .iter()
            .filter(usable)
            .filter(|v| v.applies(bk, bn))
            .collect();
        let Some(choice) = tune(gpu, problem, &candidates) else {
            log::warn!("matmul {class}: no variant could be timed; using the default");
            return Ok(default_variant(m, k, n));
        };
        let times: Vec<String> = choice
            .ms
            .iter()
            .map(|(name, ms)| format!("{name} {ms:.3}"))
            .collect();
        let [tm, tk, tn] = choice.shape;
        log::info!(
            "matmul {class}: {} is fastest on {}; ms per {tm}x{tk}x{tn} product ({} clock): {}",
            choice.variant,
            self.key,
            choice.clock,
            times.join(", ")
        );
        let v = variant(&choice.variant).expect("tuned among the variants");
        if let Some(path) = &self.cache {
            if let Err(e) = CacheFile::store(path, &self.key, &class, &choice) {
                log::warn!("cannot cache the matmul choice at {}: {e}", path.display());
            }
        }
        self.state().choices.insert(class, choice);
        Ok(v)
    }
}

/// Times each candidate on `problem` (capped at [`TUNE_CAP`]) and returns
/// the fastest, or `None` when none could be timed.
fn tune(gpu: &GpuBackend, problem: &Problem, candidates: &[&'static Variant]) -> Option<Choice> {
    let shape = Shape {
        m: problem.shape.m.min(TUNE_CAP),
        k: problem.shape.k.min(TUNE_CAP),
        n: problem.shape.n.min(TUNE_CAP),
    };
    // A scratch output from the pool: the job's own stays as poisoned.
    let mut scratch = Exec::new(gpu);
    let c = scratch.storage((shape.m * shape.n * 4) as u64);
    // One dispatch batch of variant `v`: milliseconds per product, and
    // whether the device's clock timed it. Errors land in the variant's
    // own scope, not the job's.
    let run = |v: &Variant, batch: usize| -> Result<(f64, bool)> {
        let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let timed = (|| -> Result<(f64, bool)> {
            let pipeline = gpu.pipeline_at(Kernel::Matmul, v.name, 0, &[]);
            let passes: Vec<_> = (0..batch)
                .map(|_| pass(&pipeline, problem.a, problem.b, &c, shape, v.tile))
                .collect();
            let mut exec = Exec::new(gpu);
            // Timed: submitted and waited for, also inside a pipeline's batch.
            exec.immediate();
            exec.compute(&passes)?;
            let (t, _) = exec.finish();
            let device = t.kernel_device.filter(|d| *d > 0.0);
            Ok((device.unwrap_or(t.compute) / batch as f64, device.is_some()))
        })();
        match (timed, pollster::block_on(scope.pop())) {
            (Ok(t), None) => Ok(t),
            (Err(e), _) => Err(e),
            (_, Some(e)) => Err(Error::Gpu(e.to_string())),
        }
    };
    // First runs compile each pipeline; a variant that fails is left out,
    // and one far slower than the best so far keeps its first time.
    let mut live: Vec<(&Variant, usize)> = Vec::new();
    let mut best = f64::INFINITY;
    let mut ms: BTreeMap<String, f64> = BTreeMap::new();
    let mut device_clock = true;
    for v in candidates {
        match run(v, 1) {
            Ok((warm, dev)) if warm > GIVE_UP * best && warm > GIVE_UP_MS => {
                device_clock &= dev;
                ms.insert(v.name.to_owned(), warm);
            }
            Ok((warm, _)) => {
                best = best.min(warm);
                let batch = ((TARGET_MS / warm.max(1e-6)).ceil() as usize).clamp(1, MAX_BATCH);
                live.push((v, batch));
            }
            Err(e) => log::warn!("matmul variant {} failed while tuning: {e}", v.name),
        }
    }
    // An idle GPU runs at a fraction of its clock for the first tens of
    // milliseconds of work (an H100 timed 4096³ products 3× slower in the
    // first variants than in the last, so the last always won): bring the
    // clocks up before timing, then time the variants in turns, so no
    // variant profits from the ramp, and keep each one's best turn.
    let warm_until = std::time::Instant::now() + WARM_UP;
    while let Some(&(v, batch)) = live.first() {
        if std::time::Instant::now() >= warm_until || run(v, batch).is_err() {
            break;
        }
    }
    for _ in 0..ROUNDS {
        for &(v, batch) in &live {
            match run(v, batch) {
                Ok((t, dev)) => {
                    device_clock &= dev;
                    let entry = ms.entry(v.name.to_owned()).or_insert(f64::INFINITY);
                    *entry = entry.min(t);
                }
                Err(e) => log::warn!("matmul variant {} failed while tuning: {e}", v.name),
            }
        }
    }
    let winner = ms.iter().min_by(|x, y| x.1.total_cmp(y.1))?.0.clone();
    Some(Choice {
        variant: winner,
        ms,
        shape: [shape.m, shape.k, shape.n],
        clock: if device_clock { "device" } else { "host" }.to_owned(),
    })
}

/// What `anycore devices` shows about matmul for one adapter.
#[derive(Clone, Debug, Serialize)]
pub struct MatmulReport {
    /// How the variant is chosen on this adapter.
    pub policy: String,
    /// Every variant, and whether it fits this adapter's limits.
    pub variants: Vec<VariantReport>,
    /// The tuning cache file, if there is a cache folder.
    pub cache_file: Option<PathBuf>,
    /// Cached choices for this adapter, by shape class (`MxKxN/vec4|any`,
    /// each dimension rounded up to a power of two in 64..=4096).
    pub tuned: BTreeMap<String, Choice>,
}

/// One variant in a [`MatmulReport`].
#[derive(Clone, Debug, Serialize)]
pub struct VariantReport {
    /// The variant.
    #[serde(flatten)]
    pub variant: Variant,
    /// Whether it fits the adapter's workgroup limits.
    pub usable: bool,
}

/// The matmul report for an adapter, read from the cache file without
/// opening a device.
pub fn report(a: &AdapterReport) -> MatmulReport {
    let cache = cache_file();
    // Software adapters have entries only when ANYCORE_MATMUL_TUNE=always
    // made them; shown as they are.
    let key = adapter_key(&a.name, &a.backend, &a.driver, &a.driver_info);
    let tuned = match &cache {
        Some(path) => CacheFile::load(path).choices(&key),
        None => BTreeMap::new(),
    };
    let env_forced = std::env::var(ENV_VARIANT)
        .ok()
        .and_then(|name| variant(name.trim()));
    let policy = match (env_forced, Mode::from_env(), a.software) {
        (Some(v), ..) => format!("forced to {} by {ENV_VARIANT}", v.name),
        (None, Mode::Off, _) => format!("not tuned ({ENV_TUNE}=off): cached, else by shape"),
        (None, Mode::Auto, true) => "software adapter: chosen by shape, not tuned".to_owned(),
        (None, ..) => "tuned on the first product of each shape class, then cached".to_owned(),
    };
    let variants = VARIANTS
        .iter()
        .map(|v| VariantReport {
            variant: *v,
            usable: fits(
                v,
                a.limits.max_compute_workgroup_storage_size,
                a.limits.max_compute_invocations_per_workgroup,
            ),
        })
        .collect();
    MatmulReport {
        policy,
        variants,
        cache_file: cache,
        tuned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(variant: &str) -> Choice {
        Choice {
            variant: variant.to_owned(),
            ms: BTreeMap::from([(variant.to_owned(), 1.5), ("mm128".to_owned(), 2.5)]),
            shape: [256, 256, 256],
            clock: "host".to_owned(),
        }
    }

    #[test]
    fn cache_round_trips_and_keeps_other_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("matmul-variants.json");
        assert!(
            CacheFile::load(&path).choices("gpu").is_empty(),
            "missing file"
        );
        CacheFile::store(&path, "gpu", "256x256x256/vec4", &choice("mm128v4")).unwrap();
        CacheFile::store(&path, "gpu", "64x64x64/any", &choice("mm64")).unwrap();
        CacheFile::store(&path, "other gpu", "64x64x64/any", &choice("mm128")).unwrap();
        let file = CacheFile::load(&path);
        let mine = file.choices("gpu");
        assert_eq!(mine.len(), 2);
        assert_eq!(mine["256x256x256/vec4"], choice("mm128v4"));
        assert_eq!(mine["64x64x64/any"].variant, "mm64");
        assert_eq!(file.choices("other gpu")["64x64x64/any"].variant, "mm128");
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn corrupt_or_foreign_cache_is_ignored_then_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("matmul-variants.json");
        for junk in [
            "{ not json",
            "[1, 2]",
            r#"{"format": 99, "adapters": {}}"#,
            "",
        ] {
            std::fs::write(&path, junk).unwrap();
            assert!(CacheFile::load(&path).choices("gpu").is_empty(), "{junk}");
        }
        std::fs::write(&path, "\u{0}\u{ff}garbage").unwrap();
        CacheFile::store(&path, "gpu", "64x64x64/any", &choice("mm64")).unwrap();
        assert_eq!(
            CacheFile::load(&path).choices("gpu")["64x64x64/any"].variant,
            "mm64"
        );
        // A folder where the file should be: unreadable, still no panic.
        let dir_path = dir.path().join("is-a-dir.json");
        std::fs::create_dir(&dir_path).unwrap();
        assert!(CacheFile::load(&dir_path).choices("gpu").is_empty());
        assert!(CacheFile::store(&dir_path, "gpu", "c", &choice("mm64")).is_err());
    }

    #[test]
    fn shape_classes_bucket_by_powers_of_two() {
        assert_eq!(ShapeClass::of(1, 1, 1).label(), "64x64x64/any");
        assert_eq!(ShapeClass::of(0, 0, 0).label(), "64x64x64/any");
        assert_eq!(ShapeClass::of(65, 128, 132).label(), "128x128x256/vec4");
        assert_eq!(ShapeClass::of(65, 128, 129).label(), "128x128x256/any");
        assert_eq!(
            ShapeClass::of(4096, 4096, 4096).label(),
            "4096x4096x4096/vec4"
        );
        assert_eq!(ShapeClass::of(100_000, 7, 6).label(), "4096x64x64/any");
        assert_eq!(ShapeClass::of(8, 8, 6), ShapeClass::of(64, 64, 62));
    }

    #[test]
    fn keys_name_the_adapter_and_the_shader() {
        let key = adapter_key("NVIDIA H100", "vulkan", "NVIDIA", "570.1");
        assert!(
            key.contains("NVIDIA H100") && key.contains("570.1"),
            "{key}"
        );
        assert!(key.contains(env!("CARGO_PKG_VERSION")), "{key}");
        assert_ne!(key, adapter_key("NVIDIA H100", "vulkan", "NVIDIA", "570.2"));
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn defaults_and_forcing() {
        assert_eq!(default_variant(17, 33, 65).name, "mm128");
        assert_eq!(default_variant(64, 32, 64).name, "mm64v4");
        assert_eq!(default_variant(1, 3, 1).name, "mm64");
        assert_eq!(default_variant(1000, 1000, 1000).name, "mm128v4");
        assert!(
            force_variant("nope")
                .unwrap_err()
                .to_string()
                .contains("mm128v4")
        );
        {
            let _outer = force_variant("mm64").unwrap();
            {
                let _inner = force_variant("mm128v4db").unwrap();
                assert_eq!(FORCED.with(Cell::get).unwrap().name, "mm128v4db");
            }
            assert_eq!(FORCED.with(Cell::get).unwrap().name, "mm64");
        }
        assert!(FORCED.with(Cell::get).is_none());
    }
}
