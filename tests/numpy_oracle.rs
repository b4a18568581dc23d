//! `anycore run` against NumPy, through `scripts/numpy_check.py`, on every
//! backend present. Skipped when python3 with NumPy is missing, unless
//! `ANYCORE_REQUIRE_NUMPY=1` (CI sets it).

mod common;

use std::process::Command;

#[test]
fn cli_results_match_numpy() {
    let has_numpy = Command::new("python3")
        .args(["-c", "import numpy"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_numpy {
        assert!(
            std::env::var("ANYCORE_REQUIRE_NUMPY").as_deref() != Ok("1"),
            "ANYCORE_REQUIRE_NUMPY=1 but python3 cannot import numpy"
        );
        eprintln!("skipping: python3 with numpy not found");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/numpy_check.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(env!("CARGO_BIN_EXE_anycore"));
    if common::gpu().is_some() {
        cmd.arg("--gpu");
    }
    let out = cmd.output().expect("python3 runs");
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "NumPy comparison failed:\n{text}");
}
