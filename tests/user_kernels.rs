//! Kernels a program registers (`kernel::user`): wrong descriptions and
//! shaders refused at registration naming the fault; registered kernels
//! run on both backends (outputs poisoned on the GPU) against sequential
//! references, at sizes that straddle workgroups and the device's grid
//! limit; bad jobs refused like a catalog kernel's; and they go where
//! catalog kernels go — handles, pipelines, the service, `compare`.
//!
//! The registry is the process's: each test registers kernels of its own
//! names.

mod common;

use anycore::backend::BackendChoice;
use anycore::backend::compare::{Tolerance, on_every_backend};
use anycore::backend::gpu::GpuOptions;
use anycore::error::Error;
use anycore::kernel::user::{Call, Grid, UserKernel};
use anycore::kernel::{Job, Kernel, Task};
use anycore::pipeline::{Pipeline, Step};
use anycore::tensor::{DType, Tensor, TensorData};
use common::{assert_close, backends, engine, random_f32, rng};
use rand::Rng;

/// `out = a·x + y` over f32 vectors, one invocation per element.
const AXPY_WGSL: &str = "
struct Call { dims: vec4<u32>, len: u32, a: f32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<uniform> call: Call;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = id.x + id.y * n.x * 64u;
    if i < call.len { out[i] = call.a * x[i] + y[i]; }
}";

fn axpy_cpu(call: &Call) -> Vec<TensorData> {
    let a = call.param("a");
    let out = call
        .f32s("x")
        .iter()
        .zip(call.f32s("y"))
        .map(|(x, y)| a * x + y)
        .collect();
    vec![TensorData::F32(out)]
}

/// The user axpy, under `name`.
fn axpy(name: &str) -> UserKernel {
    UserKernel::new(name, "a·x + y")
        .input("x", DType::F32, 1)
        .input("y", DType::F32, 1)
        .param("a", Some(1.0), "the scale of x")
        .output_like("out", "x")
        .wgsl(AXPY_WGSL, "main", Grid::Elements)
        .cpu(axpy_cpu)
}

fn refused(kernel: UserKernel) -> String {
    match kernel.register() {
        Ok(k) => panic!("{k} was registered"),
        Err(e @ Error::BadInput(_)) => e.to_string(),
        Err(e) => panic!("not a user error: {e:?}"),
    }
}

#[test]
fn wrong_descriptions_and_shaders_are_refused_at_registration_naming_the_fault() {
    let shader = |s: &str| axpy("reg_wgsl").wgsl(s, "main", Grid::Elements);
    let cases: Vec<(UserKernel, &str)> = vec![
        (shader("fn main( {"), "does not validate"),
        (
            shader(&AXPY_WGSL.replace("read> y", "read_write> y")),
            "'y' (@group(0) @binding(1)) is input 'y': it must be var<storage, read>",
        ),
        (
            shader(&AXPY_WGSL.replace("read_write> out", "read> out")),
            "writing to this location is not permitted",
        ),
        (
            shader(
                &AXPY_WGSL
                    .replace("x: array<f32>", "x: array<u32>")
                    .replace("* x[i]", "* f32(x[i])"),
            ),
            "is input 'x', f32: it must be a runtime-sized array<f32>",
        ),
        (
            shader(&AXPY_WGSL.replace(
                "@binding(2) var<storage, read_write> out",
                "@binding(4) var<storage, read_write> out",
            )),
            "'out' (@group(0) @binding(4)) is not bound",
        ),
        (
            shader(&AXPY_WGSL.replace("@group(0) @binding(0)", "@group(1) @binding(0)")),
            "'x' (@group(1) @binding(0)) is not bound",
        ),
        (
            shader(
                &AXPY_WGSL
                    .replace("len: u32, a: f32", "len: u32, a: u32")
                    .replace("call.a *", "f32(call.a) *"),
            ),
            "member 2 must be f32, for parameter 'a'",
        ),
        (
            shader(&AXPY_WGSL.replace("dims: vec4<u32>", "dims: vec4<f32>")),
            "its first member must be vec4<u32>",
        ),
        (
            axpy("reg_entry").wgsl(AXPY_WGSL, "nope", Grid::Elements),
            "no compute entry point 'nope' (it has: main)",
        ),
        (
            shader(&AXPY_WGSL.replace("workgroup_size(64)", "workgroup_size(8, 8)")),
            "Grid::Elements needs @workgroup_size(W)",
        ),
        (
            shader(&AXPY_WGSL.replace("workgroup_size(64)", "workgroup_size(512)")),
            "more than every device allows",
        ),
        (axpy("axpy"), "the catalog has a kernel of that name"),
        (axpy("my kernel"), "kernel name 'my kernel' must be"),
        (
            axpy("reg_u8").input("z", DType::U8, 1),
            "input 'z' is u8; registered kernels take f32, u32 or i32",
        ),
        (
            axpy("reg_twice").input("x", DType::F32, 1),
            "'x' is declared twice",
        ),
        (
            axpy("reg_like").output_like("more", "q"),
            "output 'more' is shaped like input 'q', which it does not declare",
        ),
        (
            UserKernel::new("reg_nothing", "").input("x", DType::F32, 1),
            "declares no output",
        ),
        (
            UserKernel::new("reg_no_wgsl", "")
                .input("x", DType::F32, 1)
                .output_like("out", "x")
                .cpu(|_| Vec::new()),
            "has no WGSL",
        ),
        (
            UserKernel::new("reg_no_cpu", "")
                .input("x", DType::F32, 1)
                .input("y", DType::F32, 1)
                .param("a", None, "")
                .output_like("out", "x")
                .wgsl(AXPY_WGSL, "main", Grid::Elements),
            "has no Rust fallback",
        ),
    ];
    for (kernel, want) in cases {
        let e = refused(kernel);
        assert!(e.contains(want), "expected '{want}' in: {e}");
    }
    // More that naga accepts but the backend could not run.
    let more: Vec<(UserKernel, &str)> = vec![
        (
            shader(&AXPY_WGSL.replace("struct Call", "override w: f32;\nstruct Call")),
            "override 'w' has no default",
        ),
        (
            shader(&AXPY_WGSL.replace(
                "dims: vec4<u32>, len: u32",
                "@size(32) dims: vec4<u32>, len: u32",
            )),
            "its second member must be u32, at byte 16",
        ),
        (
            shader(&AXPY_WGSL.replace("a: f32 }", "a: f32, @size(64) pad: f32 }")),
            "more than the kernel's parameters",
        ),
        (
            shader(&AXPY_WGSL.replace("a: f32 }", "@size(64) a: f32 }")),
            "more than the 32 bound",
        ),
        (
            shader(
                &AXPY_WGSL
                    .replace("x: array<f32>", "x: array<vec4<f32>>")
                    .replace("x[i]", "x[i].x"),
            ),
            "it must be a runtime-sized array<f32>",
        ),
        (
            (0..8).fold(axpy("reg_nine"), |k, i| {
                k.input(&format!("z{i}"), DType::F32, 1)
            }),
            "has 11 inputs and outputs; not every GPU binds more than 8",
        ),
        (
            axpy("reg_nan").param("b", Some(f32::NAN), ""),
            "parameter 'b' has the default NaN",
        ),
        (
            axpy("reg_swapped").param("b", Some(0.0), "").wgsl(
                &AXPY_WGSL.replace("a: f32 }", "b: f32, a: f32 }"),
                "main",
                Grid::Elements,
            ),
            "member 2 is 'b', but parameter 1 is 'a': the members follow the parameters' order",
        ),
        (
            shader(
                &AXPY_WGSL
                    .replace(
                        "@binding(0) var<storage, read> x",
                        "@binding(9) var<storage, read> x",
                    )
                    .replace(
                        "@binding(2) var<storage, read_write> out",
                        "@binding(0) var<storage, read_write> out",
                    )
                    .replace("@binding(9)", "@binding(2)"),
            ),
            "'x' (@group(0) @binding(2)) is output 'out': it must be var<storage, read_write>; the \
             bindings are 0: var<storage, read> x",
        ),
        (
            shader(
                &AXPY_WGSL
                    .replace(
                        "struct Call",
                        "var<workgroup> scratch: array<f32, 262144>;\nstruct Call",
                    )
                    .replace("+ y[i]", "+ y[i] + scratch[0]"),
            ),
            "uses 1048576 bytes of workgroup memory; not every device has more than 16384",
        ),
    ];
    for (kernel, want) in more {
        let e = refused(kernel);
        assert!(e.contains(want), "expected '{want}' in: {e}");
    }
    // Bindings another entry point uses are its own business.
    let other = format!(
        "{AXPY_WGSL}\n@group(1) @binding(0) var<storage, read_write> other: array<f32>;\n\
         @compute @workgroup_size(1) fn elsewhere() {{ other[0] = 1.0; }}"
    );
    axpy("reg_other_entry")
        .wgsl(&other, "main", Grid::Elements)
        .register()
        .unwrap();

    // A syntax error points at its line.
    let e = refused(shader(
        "@compute @workgroup_size(64)\nfn main() { let = 1; }",
    ));
    assert!(e.contains(":2:"), "{e}");

    let k = axpy("reg_once").register().unwrap();
    assert_eq!(Kernel::from_name("reg_once").unwrap(), k);
    assert!(refused(axpy("reg_once")).contains("registered already"));
    let unknown = Kernel::from_name("reg_never").unwrap_err().to_string();
    assert!(
        unknown.contains("reg_once") && unknown.contains("axpy"),
        "{unknown}"
    );
    assert!(anycore::kernel::user::registered().contains(&k));
}

/// `scaled = a·x + b·k` (f32), `sign = k·sign(x)` (i32) and `bits` = the
/// bits of x (u32): three outputs of three dtypes, the last two shaped by
/// rules.
const MIXED_WGSL: &str = "
struct Call { dims: vec4<u32>, len: u32, a: f32, b: f32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read> k: array<i32>;
@group(0) @binding(2) var<storage, read_write> scaled: array<f32>;
@group(0) @binding(3) var<storage, read_write> sign_k: array<i32>;
@group(0) @binding(4) var<storage, read_write> bits: array<u32>;
@group(0) @binding(5) var<uniform> call: Call;
@compute @workgroup_size(32)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = id.x + id.y * n.x * 32u;
    if i >= call.len { return; }
    scaled[i] = call.a * x[i] + call.b * f32(k[i]);
    sign_k[i] = k[i] * i32(sign(x[i]));
    bits[i] = bitcast<u32>(x[i]);
}";

fn mixed() -> Kernel {
    static K: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
    *K.get_or_init(|| {
        UserKernel::new("mixed", "three dtypes")
            .input("x", DType::F32, 1)
            .input("k", DType::I32, 1)
            .param("a", None, "scale of x")
            .param("b", Some(0.5), "scale of k")
            .output_like("scaled", "x")
            .output("sign_k", DType::I32, |s| Ok(s.shape("k").to_vec()))
            .output("bits", DType::U32, |s| {
                if s.shape("x") != s.shape("k") {
                    return Err(format!(
                        "x has {:?} elements but k has {:?}",
                        s.shape("x"),
                        s.shape("k")
                    ));
                }
                Ok(s.shape("x").to_vec())
            })
            .wgsl(MIXED_WGSL, "main", Grid::Elements)
            .cpu(|call| {
                let (a, b) = (call.param("a"), call.param("b"));
                let (x, k) = (call.f32s("x"), call.i32s("k"));
                let scaled = x
                    .iter()
                    .zip(k)
                    .map(|(x, &k)| a * x + b * k as f32)
                    .collect();
                let sign = x
                    .iter()
                    .zip(k)
                    // WGSL's sign(0) is 0; Rust's signum(0.0) is 1.
                    .map(|(x, k)| k * (i32::from(*x > 0.0) - i32::from(*x < 0.0)))
                    .collect();
                let bits = x.iter().map(|x| x.to_bits()).collect();
                vec![
                    TensorData::F32(scaled),
                    TensorData::I32(sign),
                    TensorData::U32(bits),
                ]
            })
            .register()
            .unwrap()
    })
}

#[test]
fn a_registered_kernel_matches_a_sequential_reference_on_every_backend() {
    let kernel = mixed();
    let engine = engine(GpuOptions::default());
    let mut rng = rng();
    for &n in &common::SIZES[1..] {
        let mut x = random_f32(&mut rng, n);
        x[0] = 0.0; // sign(0) is 0 on both sides
        let k: Vec<i32> = (0..n).map(|_| rng.random_range(-1000..1000)).collect();
        let a: f32 = rng.random_range(-2.0..2.0);
        let job = Job::new(kernel)
            .input("x", Tensor::from_f32(x.clone()))
            .input("k", Tensor::new(vec![n], TensorData::I32(k.clone())))
            .param("a", a);
        let want_scaled: Vec<f32> = x
            .iter()
            .zip(&k)
            .map(|(x, &k)| a * x + 0.5 * k as f32)
            .collect();
        for choice in backends(&engine) {
            let report = engine.run_on(job.clone(), choice).unwrap();
            assert_eq!(report.backend.name(), choice.name());
            let what = format!("mixed n={n} on {choice:?}");
            let o = &report.outputs;
            assert_close(&what, o["scaled"].as_f32().unwrap(), &want_scaled, 1e-6);
            let TensorData::I32(sign) = o["sign_k"].data() else {
                panic!("{what}: sign_k is {}", o["sign_k"].describe());
            };
            for i in 0..n {
                let s = if x[i] > 0.0 {
                    1
                } else if x[i] < 0.0 {
                    -1
                } else {
                    0
                };
                assert_eq!(sign[i], k[i] * s, "{what}: sign_k[{i}]");
            }
            let bits: Vec<u32> = x.iter().map(|v| v.to_bits()).collect();
            assert_eq!(o["bits"].as_u32().unwrap(), &bits[..], "{what}: bits");
        }
    }
}

#[test]
fn bad_jobs_are_refused_naming_the_input_or_parameter() {
    let kernel = mixed();
    let x = || Tensor::from_f32(vec![1.0, 2.0, 3.0]);
    let k = |n: usize| Tensor::new(vec![n], TensorData::I32(vec![1; n]));
    // x f32[3] and k i32[3]: a good job but for what each case changes.
    let good = || Job::new(kernel).input("x", x()).input("k", k(3));
    let cases: Vec<(Job, &str)> = vec![
        (good(), "mixed needs parameter 'a'"),
        (
            good().input("k", x()).param("a", 1),
            "input 'k' of mixed is f32[3], but it must be i32",
        ),
        (
            good()
                .input("x", Tensor::new(vec![1, 3], TensorData::F32(vec![0.0; 3])))
                .param("a", 1),
            "must have 1 dimension",
        ),
        (
            good().input("k", k(4)).param("a", 1),
            "mixed: x has [3] elements but k has [4]",
        ),
        (
            good().param("a", "lots"),
            "parameter 'a' of mixed: 'lots' is not a number",
        ),
        (
            good().param("a", 1e39),
            "parameter 'a' of mixed: it is beyond the range of f32",
        ),
        (
            good().param("a", 1).param("c", 2),
            "unknown parameter 'c' for mixed (it takes: a, b)",
        ),
        (
            good()
                .input("x", Tensor::from_f32(Vec::new()))
                .input("k", k(0))
                .param("a", 1),
            "input 'x' is empty",
        ),
        (
            Job::new(kernel).input("x", x()).param("a", 1),
            "mixed needs input 'k'",
        ),
    ];
    for (job, want) in cases {
        let e = Task::new(job).unwrap_err();
        assert!(e.is_user_error(), "{e:?}");
        assert!(e.to_string().contains(want), "expected '{want}' in: {e}");
    }
}

/// Writes each element's own index along each dimension, to show the grid
/// covers every element of a shape once, in the right place.
const SHAPE_WGSL: &str = "
struct Call { dims: vec4<u32>, len: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<u32>;
@group(0) @binding(2) var<uniform> call: Call;
@compute @workgroup_size(4, 4, 2)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let d = call.dims;
    if id.x >= d.x || id.y >= d.y || id.z >= d.z * d.w { return; }
    let i = (id.z * d.y + id.y) * d.x + id.x;
    out[i] = id.x + 100u * id.y + 10000u * id.z;
}";

/// One invocation per element, of a workgroup of one: 70,000 elements
/// need more workgroups than a dimension allows (65,535), so the grid goes
/// on in y.
const SPILL_WGSL: &str = "
struct Call { dims: vec4<u32>, len: u32 }
@group(0) @binding(0) var<storage, read> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> out: array<f32>;
@group(0) @binding(2) var<uniform> call: Call;
@compute @workgroup_size(1)
fn main(@builtin(global_invocation_id) id: vec3<u32>, @builtin(num_workgroups) n: vec3<u32>) {
    let i = id.x + id.y * n.x;
    if i < call.len { out[i] = x[i] + 1.0; }
}";

#[test]
fn grids_cover_every_element_of_any_shape_and_past_the_dispatch_limit() {
    let shaped = UserKernel::new("grid_shape", "indices")
        .input("x", DType::F32, 4)
        .output("out", DType::U32, |s| Ok(s.shape("x").to_vec()))
        .wgsl(SHAPE_WGSL, "main", Grid::Shape)
        .cpu(|call| {
            let s = call.output_shape("out");
            let (d3, d2, d1, d0) = (s[0], s[1], s[2], s[3]);
            let mut out = Vec::with_capacity(d3 * d2 * d1 * d0);
            for z in 0..d3 * d2 {
                for y in 0..d1 {
                    for x in 0..d0 {
                        out.push((x + 100 * y + 10000 * z) as u32);
                    }
                }
            }
            vec![TensorData::U32(out)]
        })
        .register()
        .unwrap();
    let spill = UserKernel::new("grid_spill", "x + 1")
        .input("x", DType::F32, 1)
        .output_like("out", "x")
        .wgsl(SPILL_WGSL, "main", Grid::Elements)
        .cpu(|call| {
            vec![TensorData::F32(
                call.f32s("x").iter().map(|v| v + 1.0).collect(),
            )]
        })
        .register()
        .unwrap();
    let engine = engine(GpuOptions::default());
    for shape in [[1, 1, 1, 1], [2, 3, 5, 7], [1, 3, 9, 17], [3, 1, 1, 5]] {
        let n = shape.iter().product();
        let x = Tensor::new(shape.to_vec(), TensorData::F32(vec![0.0; n]));
        let mut want = Vec::new();
        for z in 0..shape[0] * shape[1] {
            for y in 0..shape[2] {
                for x in 0..shape[3] {
                    want.push((x + 100 * y + 10000 * z) as u32);
                }
            }
        }
        for choice in backends(&engine) {
            let report = engine
                .run_on(Job::new(shaped).input("x", x.clone()), choice)
                .unwrap();
            assert_eq!(report.outputs["out"].shape(), &shape);
            assert_eq!(
                report.outputs["out"].as_u32().unwrap(),
                &want[..],
                "{shape:?} on {choice:?}"
            );
        }
    }
    let n = 70_000;
    let x = random_f32(&mut rng(), n);
    let want: Vec<f32> = x.iter().map(|v| v + 1.0).collect();
    for choice in backends(&engine) {
        let job = Job::new(spill).input("x", Tensor::from_f32(x.clone()));
        let report = engine.run_on(job, choice).unwrap();
        assert_close(
            &format!("spill on {choice:?}"),
            report.outputs["out"].as_f32().unwrap(),
            &want,
            0.0,
        );
    }
}

#[test]
fn registered_kernels_keep_handles_and_run_in_pipelines_beside_catalog_kernels() {
    let kernel = axpy("pipe_axpy").register().unwrap();
    let engine = engine(GpuOptions::default());
    let mut rng = rng();
    let n = 1000;
    let (x, y) = (random_f32(&mut rng, n), random_f32(&mut rng, n));
    let want: Vec<f32> = x.iter().zip(&y).map(|(x, y)| 3.0 * x + y).collect();
    let want_sum: f64 = want.iter().map(|&v| f64::from(v)).sum();
    for choice in backends(&engine) {
        // Kept where it ran, then read by a catalog kernel.
        let job = Job::new(kernel)
            .input("x", Tensor::from_f32(x.clone()))
            .input("y", Tensor::from_f32(y.clone()))
            .param("a", 3)
            .keep("out");
        let report = engine.run_on(job, choice).unwrap();
        let kept = report.kept["out"].clone();
        let total = engine
            .run_on(Job::new(Kernel::Reduce).input("x", kept.clone()), choice)
            .unwrap();
        let got = f64::from(total.outputs["out"].as_f32().unwrap()[0]);
        assert!(
            (got - want_sum).abs() < 1e-3 * want_sum.abs().max(1.0),
            "{got} vs {want_sum}"
        );
        assert_close(
            "kept",
            engine.read(&kept).unwrap().as_f32().unwrap(),
            &want,
            1e-6,
        );

        // catalog axpy → registered axpy → catalog reduce, one pipeline.
        let pipeline = Pipeline::new()
            .input("x", Tensor::from_f32(x.clone()))
            .step(
                Step::new("twice", Kernel::Axpy)
                    .input_shared("x", "x")
                    .input("y", Tensor::from_f32(vec![0.0; n]))
                    .param("a", 2),
            )
            .step(
                Step::new("mine", kernel)
                    .input_from("x", "twice", "out")
                    .input("y", Tensor::from_f32(y.clone()))
                    .param("a", 1.5),
            )
            .step(Step::new("total", Kernel::Reduce).input_from("x", "mine", "out"))
            .output("mine", "mine", "out")
            .output("total", "total", "out");
        let report = engine.run_pipeline_on(pipeline, choice).unwrap();
        assert_eq!(report.backend.name(), choice.name());
        assert_eq!(report.steps.len(), 3);
        assert_close(
            &format!("pipeline on {choice:?}"),
            report.outputs["mine"].as_f32().unwrap(),
            &want,
            1e-6,
        );
    }
}

#[test]
fn a_failing_fallback_fails_only_its_own_job() {
    let panics = UserKernel::new("fallback_panics", "panics on a = 13")
        .input("x", DType::F32, 1)
        .input("y", DType::F32, 1)
        .param("a", Some(1.0), "")
        .output_like("out", "x")
        .wgsl(AXPY_WGSL, "main", Grid::Elements)
        .cpu(|call| {
            assert!(call.param("a") != 13.0, "thirteen");
            axpy_cpu(call)
        })
        .register()
        .unwrap();
    let short = UserKernel::new("fallback_short", "gives too little")
        .input("x", DType::F32, 1)
        .input("y", DType::F32, 1)
        .param("a", Some(1.0), "")
        .output_like("out", "x")
        .wgsl(AXPY_WGSL, "main", Grid::Elements)
        .cpu(|_| vec![TensorData::F32(vec![1.0])])
        .register()
        .unwrap();
    let engine = engine(GpuOptions::default());
    let job = |k: Kernel, a: f32| {
        Job::new(k)
            .input("x", Tensor::from_f32(vec![1.0; 5]))
            .input("y", Tensor::from_f32(vec![1.0; 5]))
            .param("a", a)
    };
    let e = engine
        .run_on(job(panics, 13.0), BackendChoice::Cpu)
        .unwrap_err();
    assert!(
        matches!(e, Error::Panicked(_)) && e.to_string().contains("thirteen"),
        "{e}"
    );
    let e = engine
        .run_on(job(short, 1.0), BackendChoice::Cpu)
        .unwrap_err();
    assert!(
        e.to_string().contains("the Rust fallback of 'fallback_short' gave 1 f32 elements for output 'out', which is f32[5]"),
        "{e}"
    );
    let ok = engine.run_on(job(panics, 2.0), BackendChoice::Cpu).unwrap();
    assert_eq!(ok.outputs["out"].as_f32().unwrap(), &[3.0; 5]);
}

#[test]
fn compare_finds_a_shader_that_differs_from_its_fallback_or_skips_an_element() {
    let engine = engine(GpuOptions::default());
    if !engine.engine().coordinator().has_gpu() {
        return; // `engine` fails under ANYCORE_REQUIRE_GPU_TESTS=1
    }
    let agreeing = axpy("cmp_agrees").register().unwrap();
    let off = axpy("cmp_off")
        .wgsl(
            &AXPY_WGSL.replace("+ y[i]", "+ y[i] + 0.01"),
            "main",
            Grid::Elements,
        )
        .register()
        .unwrap();
    let skips = axpy("cmp_skips")
        .wgsl(
            &AXPY_WGSL.replace("if i < call.len", "if i + 1u < call.len"),
            "main",
            Grid::Elements,
        )
        .register()
        .unwrap();
    let mut rng = rng();
    let n = 257;
    let mut job = |k: Kernel| {
        Job::new(k)
            .input("x", Tensor::from_f32(random_f32(&mut rng, n)))
            .input("y", Tensor::from_f32(vec![2.0; n]))
            .param("a", 0.5)
    };
    let agreement = on_every_backend(&job(agreeing), Tolerance::F32).unwrap();
    let kinds: Vec<&str> = agreement.runs.iter().map(|r| r.backend.name()).collect();
    assert_eq!(kinds, ["cpu", "gpu"]);
    assert!(agreement.no_gpu.is_none());

    let e = on_every_backend(&job(off), Tolerance::F32)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cmp_off: output 'out' differs first at element 0 [0]"),
        "{e}"
    );
    // The element the shader skips keeps the zero outputs start with
    // (y = 2 makes every CPU value at least 1.5).
    let e = on_every_backend(&job(skips), Tolerance::F32)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&format!("element {} [{}]: 0 instead of", n - 1, n - 1)),
        "{e}"
    );
    // A fallback that panics is an error, not a panic of the caller.
    let panics = axpy("cmp_panics")
        .cpu(|_| panic!("the fallback gave up"))
        .register()
        .unwrap();
    let e = on_every_backend(&job(panics), Tolerance::F32).unwrap_err();
    assert!(
        matches!(e, Error::Panicked(_)) && e.to_string().contains("the fallback gave up"),
        "{e}"
    );
}

/// Counts the elements of `k` by `k mod 4` into four atomics: a grid over
/// the four-element output, each invocation striding over the input.
const COUNT_WGSL: &str = "
@group(0) @binding(0) var<storage, read> k: array<u32>;
@group(0) @binding(1) var<storage, read_write> counts: array<atomic<u32>>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    for (var i = id.x; i < arrayLength(&k); i += 64u) {
        atomicAdd(&counts[k[i] % 4u], 1u);
    }
}";

#[test]
fn outputs_start_at_zero_so_atomic_counters_count_once_per_job() {
    let kernel = UserKernel::new("count_mod4", "counts by k mod 4")
        .input("k", DType::U32, 1)
        .output("counts", DType::U32, |_| Ok(vec![4]))
        .wgsl(COUNT_WGSL, "main", Grid::Elements)
        .cpu(|call| {
            let mut counts = vec![0u32; 4];
            for &k in call.u32s("k") {
                counts[(k % 4) as usize] += 1;
            }
            vec![TensorData::U32(counts)]
        })
        .register()
        .unwrap();
    let mut rng = rng();
    let n = 1001;
    let k: Vec<u32> = (0..n).map(|_| rng.random()).collect();
    let mut want = [0u32; 4];
    for &v in &k {
        want[(v % 4) as usize] += 1;
    }
    let engine = engine(GpuOptions::default());
    for choice in backends(&engine) {
        // Pooled buffers come back between the runs.
        for run in 0..3 {
            let job = Job::new(kernel).input("k", Tensor::new(vec![n], TensorData::U32(k.clone())));
            let report = engine.run_on(job, choice).unwrap();
            assert_eq!(
                report.outputs["counts"].as_u32().unwrap(),
                &want,
                "run {run} on {choice:?}"
            );
        }
    }
    let job = Job::new(kernel).input("k", Tensor::new(vec![n], TensorData::U32(k)));
    on_every_backend(&job, Tolerance::EXACT).unwrap();
}

#[test]
fn a_shape_rule_that_panics_fails_its_job_with_an_error() {
    let kernel = UserKernel::new("rule_panics", "a rule with a typo")
        .input("x", DType::F32, 1)
        .output("out", DType::F32, |s| Ok(s.shape("typo").to_vec()))
        .wgsl(SPILL_WGSL, "main", Grid::Elements)
        .cpu(|call| vec![TensorData::F32(call.f32s("x").to_vec())])
        .register()
        .unwrap();
    let e = Task::new(Job::new(kernel).input("x", Tensor::from_f32(vec![1.0]))).unwrap_err();
    assert!(
        matches!(e, Error::Panicked(_))
            && e.to_string()
                .contains("the shape rule of output 'out' of rule_panics")
            && e.to_string().contains("has no input 'typo'"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_runs_a_registered_kernel_and_refuses_its_bad_jobs_with_4xx() {
    axpy("served_axpy").register().unwrap();
    let server = common::server::Server::start(8, 1 << 20).await;
    let body = serde_json::json!({
        "kernel": "served_axpy",
        "params": {"a": 2},
        "inputs": {
            "x": {"dtype": "f32", "shape": [3], "data": [1.0, 2.0, 3.0]},
            "y": {"dtype": "f32", "shape": [3], "data": [0.5, 0.5, 0.5]},
        },
    });
    let (status, _, text) = server
        .call("POST", "/v1/jobs", Some(body.to_string()))
        .await;
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["kernel"], "served_axpy");
    assert_eq!(
        v["outputs"]["out"]["data"],
        serde_json::json!([2.5, 4.5, 6.5])
    );

    let mut bad = body.clone();
    bad["inputs"]["y"] = serde_json::json!({"dtype": "i32", "shape": [3], "data": [1, 2, 3]});
    let (status, _, text) = server.call("POST", "/v1/jobs", Some(bad.to_string())).await;
    assert_eq!(status, 400, "{text}");
    assert!(
        text.contains("input 'y' of served_axpy is i32[3]"),
        "{text}"
    );
}
