//! Every file in `shaders/` parses and validates with naga, belongs to a
//! kernel (or is one of the backend's own, `UTILITY_SHADERS`), and declares the entry points and workgroup sizes the Rust side
//! dispatches with.

use std::path::Path;

use anycore::backend::gpu::UTILITY_SHADERS;
use anycore::kernel::{Kernel, ShaderInfo};

fn validate(file: &str, source: &str) -> naga::Module {
    let module = naga::front::wgsl::parse_str(source)
        .unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(source)));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::default(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{file}: {}", e.emit_to_string(source)));
    module
}

#[test]
fn every_shader_validates_and_matches_its_kernel() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("shaders/ exists")
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".wgsl"))
        .collect();
    files.sort();
    // Every shader the Rust side knows: one per kernel, plus the backend's
    // own (the bandwidth copy).
    let known: Vec<&ShaderInfo> = Kernel::ALL
        .into_iter()
        .map(Kernel::shader)
        .chain(UTILITY_SHADERS.iter().copied())
        .collect();
    // An empty folder must not pass: every known shader has its file.
    assert_eq!(files.len(), known.len(), "shaders found: {files:?}");

    for file in &files {
        let source = std::fs::read_to_string(dir.join(file)).unwrap();
        let module = validate(file, &source);
        let owners: Vec<&&ShaderInfo> = known.iter().filter(|s| s.file == file).collect();
        assert_eq!(owners.len(), 1, "{file} must belong to exactly one kernel");
        let shader = owners[0];
        assert_eq!(shader.source, source, "{file}: compiled-in copy is stale");
        for (name, size) in shader.entry_points {
            let ep = module
                .entry_points
                .iter()
                .find(|ep| ep.name == *name)
                .unwrap_or_else(|| panic!("{file}: no entry point '{name}'"));
            assert_eq!(ep.stage, naga::ShaderStage::Compute, "{file}: {name}");
            assert_eq!(&ep.workgroup_size, size, "{file}: {name} workgroup size");
        }
    }
}
