//! Pipelines against the same jobs run one by one, on each backend;
//! pipelines checked as a whole before anything runs, errors naming the
//! step; outputs used twice; a step failing at run time.

mod common;

use anycore::backend::gpu::GpuOptions;
use anycore::backend::{BackendChoice, BackendKind};
use anycore::engine::BlockingEngine;
use anycore::kernel::{Job, Kernel, Outputs};
use anycore::pipeline::{Pipeline, Step};
use anycore::tensor::{Tensor, TensorData};
use rand::Rng;

use common::{backends, random_f32, rng};

fn engine() -> BlockingEngine {
    common::engine(GpuOptions::default())
}

fn bits(outputs: &Outputs, name: &str) -> Vec<u8> {
    outputs[name].data().as_bytes().to_vec()
}

/// The three steps of [`common::three_steps`], then sorted = sort(scaled):
/// one output read twice and returned too.
fn chain(x: &Tensor, y: &Tensor) -> Pipeline {
    common::three_steps(x, y)
        .step(Step::new("sorted", Kernel::Sort).input_from("keys", "scaled", "out"))
        .output("sum", "total", "out")
        .output("scaled", "scaled", "out")
        .output("sorted", "sorted", "keys")
}

#[test]
fn a_pipeline_gives_what_its_jobs_give_one_by_one() {
    let engine = engine();
    let mut rng = rng();
    for choice in backends(&engine) {
        for n in [1, 4_097, rng.random_range(1..300_000)] {
            let x = Tensor::from_f32(random_f32(&mut rng, n));
            let y = Tensor::from_f32(random_f32(&mut rng, n));
            let report = engine.run_pipeline_on(chain(&x, &y), choice).unwrap();
            let want_kind = match choice {
                BackendChoice::Gpu => BackendKind::Gpu,
                _ => BackendKind::Cpu,
            };
            assert_eq!(report.backend, want_kind);
            let names: Vec<&str> = report.steps.iter().map(|s| s.name.as_str()).collect();
            assert_eq!(names, ["scaled", "again", "total", "sorted"]);

            // The same jobs, one by one, on the same backend.
            let job = |job: Job| engine.run_on(job, choice).unwrap().outputs;
            let scaled = job(Job::new(Kernel::Axpy)
                .param("a", 2)
                .input("x", x.clone())
                .input("y", y.clone()));
            let again = job(Job::new(Kernel::Axpy)
                .param("a", -0.5)
                .input("x", scaled["out"].clone())
                .input("y", x.clone()));
            let total = job(Job::new(Kernel::Reduce).input("x", again["out"].clone()));
            let sorted = job(Job::new(Kernel::Sort).input("keys", scaled["out"].clone()));
            let what = format!("{} n={n}", choice.name());
            assert_eq!(
                report.outputs.len(),
                3,
                "{what}: only the outputs asked for"
            );
            assert_eq!(
                bits(&report.outputs, "sum"),
                bits(&total, "out"),
                "{what}: sum"
            );
            assert_eq!(
                bits(&report.outputs, "scaled"),
                bits(&scaled, "out"),
                "{what}"
            );
            assert_eq!(
                bits(&report.outputs, "sorted"),
                bits(&sorted, "keys"),
                "{what}"
            );
        }
    }
}

/// Each bad pipeline is refused by `check`, before any backend sees it,
/// with a message naming the step (or the output) at fault.
#[test]
fn a_bad_step_is_refused_before_anything_runs_naming_it() {
    let x = Tensor::from_f32(vec![1.0, 2.0, 3.0]);
    let short = Tensor::from_f32(vec![1.0, 2.0]);
    let good = || {
        Pipeline::new()
            .step(Step::new("first", Kernel::Scan).input("x", x.clone()))
            .output("out", "first", "out")
    };
    let cases: Vec<(Pipeline, &str)> = vec![
        (Pipeline::new(), "at least one step"),
        (
            good().step(
                Step::new("second", Kernel::Axpy)
                    .input_from("x", "first", "out")
                    .input("y", short.clone()),
            ),
            "step 'second': axpy: input 'x' is f32[3] but 'y' is f32[2]",
        ),
        (
            good().step(Step::new("second", Kernel::Reduce).input_from("x", "third", "out")),
            "step 'second': there is no step named 'third'",
        ),
        (
            good()
                .step(Step::new("second", Kernel::Reduce).input_from("x", "third", "out"))
                .step(Step::new("third", Kernel::Scan).input("x", x.clone())),
            "step 'second': step 'third' comes later",
        ),
        (
            good().step(Step::new("second", Kernel::Reduce).input_from("x", "first", "sum")),
            "step 'second': unknown output 'sum' for scan",
        ),
        (
            good().step(Step::new("first", Kernel::Reduce).input_from("x", "first", "out")),
            "step name 'first' is used twice",
        ),
        (
            good().step(
                Step::new("second", Kernel::Sort)
                    .input("keys", x.clone())
                    .param("indices", "maybe"),
            ),
            "step 'second': ",
        ),
        (
            good().step(
                Step::new("second", Kernel::Histogram)
                    .input_from("x", "first", "out")
                    .param("bins", 0),
            ),
            "step 'second': histogram: parameter 'bins' is 0",
        ),
        (
            good()
                .step(Step::new("second", Kernel::Sort).input("keys", x.clone()))
                .output("idx", "second", "indices"),
            "pipeline output 'idx': step 'second' (sort) does not give output 'indices'",
        ),
        (
            good().output("out", "first", "out"),
            "pipeline output 'out' is named twice",
        ),
        (
            Pipeline::new().step(Step::new("first", Kernel::Scan).input("x", x.clone())),
            "at least one output",
        ),
    ];
    for (pipeline, want) in cases {
        let err = pipeline.check().unwrap_err();
        assert!(err.is_user_error(), "{err}");
        assert!(
            err.to_string().contains(want),
            "{err:?} should say {want:?}"
        );
    }
}

/// A step that fails on its data (the histogram of NaN without a range)
/// fails the pipeline at that step, naming it; the engine goes on.
#[test]
fn a_step_failing_on_its_data_names_itself() {
    let engine = engine();
    for choice in backends(&engine) {
        let pipeline = Pipeline::new()
            .step(
                Step::new("sums", Kernel::Scan)
                    .param("inclusive", true)
                    .input("x", Tensor::from_f32(vec![1.0, f32::NAN])),
            )
            .step(Step::new("counts", Kernel::Histogram).input_from("x", "sums", "out"))
            .output("counts", "counts", "out");
        let err = engine.run_pipeline_on(pipeline, choice).unwrap_err();
        assert!(err.is_user_error(), "{err}");
        assert!(
            err.to_string().starts_with("step 'counts': histogram: "),
            "{err}"
        );
        let ok = engine
            .run_on(
                Job::new(Kernel::Reduce).input("x", Tensor::from_f32(vec![2.0])),
                choice,
            )
            .unwrap();
        assert_eq!(ok.outputs["out"].data(), &TensorData::F32(vec![2.0]));
    }
}

/// What moved is counted: a GPU `axpy` of n elements uploads x and y (8n
/// bytes) and downloads out (4n), in at least three submissions; the CPU
/// moves nothing; a pipeline's traffic is its steps' added up, and the
/// outputs brought home at its end.
#[test]
fn traffic_is_counted_per_job_and_per_step() {
    let engine = engine();
    let mut rng = rng();
    let n = rng.random_range(1..200_000);
    let x = Tensor::from_f32(random_f32(&mut rng, n));
    let y = Tensor::from_f32(random_f32(&mut rng, n));
    for choice in backends(&engine) {
        let job = Job::new(Kernel::Axpy)
            .input("x", x.clone())
            .input("y", y.clone());
        let t = engine.run_on(job, choice).unwrap().traffic;
        if choice == BackendChoice::Gpu {
            assert_eq!(t.uploaded_bytes, 8 * n as u64, "n={n}");
            assert_eq!(t.downloaded_bytes, 4 * n as u64, "n={n}");
            assert!(t.submissions >= 3, "{t:?}");
        } else {
            assert_eq!(t, Default::default());
        }
        let report = engine.run_pipeline_on(chain(&x, &y), choice).unwrap();
        let mut sum = anycore::backend::Traffic::default();
        for step in &report.steps {
            sum.add(&step.traffic);
        }
        // The steps' uploads, and their downloads plus bringing home the
        // outputs asked for that are still on the device.
        assert_eq!(report.traffic.uploaded_bytes, sum.uploaded_bytes);
        assert!(report.traffic.downloaded_bytes >= sum.downloaded_bytes);
        assert_eq!(
            report.traffic == Default::default(),
            choice == BackendChoice::Cpu
        );
    }
}
