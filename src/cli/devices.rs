//! `anycore devices`: every adapter wgpu sees, whether `auto` would use it,
//! how `matmul` picks its shader variant there (and the choices cached for
//! it), and the CPU pool.

use serde::Serialize;

use anycore::Result;
use anycore::backend::Backend;
use anycore::backend::cpu::CpuBackend;
use anycore::backend::gpu::adapter::{self, AdapterReport};
use anycore::backend::gpu::tune::{self, MatmulReport};
use anycore::pool::{Pool, PoolConfig, redacted};

/// Options of `anycore devices`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    software_gpu: super::SoftwareGpu,
    /// List the workers of the pool on this NATS server instead (those
    /// that announced themselves in the last 15 s).
    #[arg(long, value_name = "URL")]
    nats: Option<String>,
}

/// The report, its fields named as the service's `GET /v1/devices` names
/// them.
#[derive(Serialize)]
struct Report {
    adapters: Vec<Adapter>,
    /// The GPU `auto` would use, as a job's `device` names it.
    gpu: Option<String>,
    /// The CPU pool, as a job's `device` names it.
    cpu: String,
    /// What `run --backend auto` would use.
    auto: String,
}

/// One adapter, with its matmul variants and tuned choices.
#[derive(Serialize)]
struct Adapter {
    #[serde(flatten)]
    adapter: AdapterReport,
    matmul: MatmulReport,
}

pub fn main(args: Args) -> Result<()> {
    if let Some(url) = &args.nats {
        return pool_workers(url, args.json);
    }
    let allow_software = args.software_gpu.allowed();
    let adapters: Vec<Adapter> = adapter::reports(allow_software)
        .into_iter()
        .map(|adapter| Adapter {
            matmul: tune::report(&adapter),
            adapter,
        })
        .collect();
    let cpu = CpuBackend::new(None)?.device();
    let gpu = adapters
        .iter()
        .map(|a| &a.adapter)
        .find(|a| a.used_by_auto)
        .map(|a| format!("{} ({})", a.name, a.backend));
    let auto = match &gpu {
        Some(gpu) => format!("gpu: {gpu}"),
        None => format!("cpu: {cpu}"),
    };
    let report = Report {
        adapters,
        gpu,
        cpu,
        auto,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
        return Ok(());
    }
    if report.adapters.is_empty() {
        println!("GPU adapters: none found");
    } else {
        println!("GPU adapters:");
    }
    for Adapter { adapter: a, matmul } in &report.adapters {
        let mark = if a.used_by_auto { "*" } else { " " };
        let note = if a.software && !allow_software {
            "  (software; used only with --allow-software-gpu)"
        } else if a.software {
            "  (software)"
        } else {
            ""
        };
        println!(
            "{mark} {} [{}, {}] driver {} {}{note}",
            a.name, a.backend, a.device_type, a.driver, a.driver_info
        );
        println!(
            "    max storage binding {} MiB, max buffer {} MiB, {} workgroups/dim, {} invocations/group, {} KiB workgroup memory",
            a.limits.max_storage_buffer_binding_size >> 20,
            a.limits.max_buffer_size >> 20,
            a.limits.max_compute_workgroups_per_dimension,
            a.limits.max_compute_invocations_per_workgroup,
            a.limits.max_compute_workgroup_storage_size >> 10,
        );
        println!("    {}", matmul_line(matmul));
    }
    println!("CPU: {}", report.cpu);
    println!("--backend auto uses: {}", report.auto);
    Ok(())
}

/// One line on an adapter's matmul variants: which exist (those that do not
/// fit its limits marked), how one is chosen, and the cached choices.
fn matmul_line(m: &MatmulReport) -> String {
    let variants: Vec<String> = m
        .variants
        .iter()
        .map(|v| {
            let name = v.variant.name;
            if v.usable {
                name.to_owned()
            } else {
                format!("{name} (too large here)")
            }
        })
        .collect();
    let tuned = if m.tuned.is_empty() {
        "none cached yet".to_owned()
    } else {
        let choices: Vec<String> = m
            .tuned
            .iter()
            .map(|(class, c)| format!("{class} {}", c.variant))
            .collect();
        format!("cached: {}", choices.join(", "))
    };
    format!(
        "matmul variants {}; {}; {tuned}",
        variants.join(" "),
        m.policy
    )
}

/// `devices --nats URL`: the pool's workers, their hardware and counters.
fn pool_workers(url: &str, json: bool) -> Result<()> {
    let workers = super::runtime()?.block_on(async {
        let pool = Pool::connect(PoolConfig::new(url)).await?;
        pool.roster().await
    })?;
    if json {
        let report = serde_json::json!({"pool": redacted(url), "workers": workers});
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("report serialises")
        );
        return Ok(());
    }
    println!("{} worker(s) on {}", workers.len(), redacted(url));
    for w in &workers {
        let c = &w.counts;
        println!(
            "  {} on {}: takes {} jobs; {} of {} slots busy; ran {}, redelivered {}, dead-lettered {}",
            w.info.name,
            w.info.host,
            w.takes.join("+"),
            w.running,
            w.concurrency,
            c.ran,
            c.redelivered,
            c.dead_lettered
        );
        println!(
            "    GPU: {}; CPU: {}",
            w.info.gpu.as_deref().unwrap_or("none"),
            w.cpu
        );
    }
    Ok(())
}
