//! `anycore kernels [NAME] [--json]`: the catalog, read from each kernel's
//! own signature — inputs, parameters with their defaults, outputs, a
//! one-line summary and, for one kernel, an example command.

use serde::Serialize;

use anycore::Result;
use anycore::kernel::{Kernel, Signature};

/// Options of `anycore kernels`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Show this kernel only, with an example command.
    name: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// One kernel as `--json` writes it.
#[derive(Serialize)]
struct Entry {
    name: &'static str,
    /// How it runs past `--memory-budget` (`whole`: it does not).
    streaming: &'static str,
    #[serde(flatten)]
    signature: &'static Signature,
}

pub fn main(args: Args) -> Result<()> {
    let kernels = match &args.name {
        Some(name) => vec![Kernel::from_name(name)?],
        None => Kernel::ALL.to_vec(),
    };
    let entries: Vec<Entry> = kernels
        .iter()
        .map(|&k| Entry {
            name: k.name(),
            streaming: k.streaming().name(),
            signature: k.signature(),
        })
        .collect();
    if args.json {
        let text = match &entries[..] {
            [one] if args.name.is_some() => serde_json::to_string_pretty(one),
            all => serde_json::to_string_pretty(all),
        };
        println!("{}", text.expect("the catalog serialises"));
        return Ok(());
    }
    for e in &entries {
        print_kernel(e, args.name.is_some());
    }
    if args.name.is_none() {
        println!("\n`anycore kernels NAME` shows one kernel with an example command.");
    }
    Ok(())
}

fn print_kernel(e: &Entry, detail: bool) {
    let s = e.signature;
    println!("{} — {}", e.name, s.summary);
    for a in s.inputs {
        let optional = if a.optional { " (optional)" } else { "" };
        println!("    -i {:<10} {}{optional}", a.name, a.doc);
    }
    for p in s.params {
        let default = p
            .default
            .map_or("required".to_owned(), |d| format!("default {d}"));
        println!("    -p {:<10} {} ({default})", p.name, p.doc);
    }
    for a in s.outputs {
        println!("    -o {:<10} {}", a.name, a.doc);
    }
    match e.streaming {
        "whole" => println!("    past --memory-budget: refused (needs whole arrays)"),
        how => println!("    past --memory-budget: runs in chunks ({how})"),
    }
    if detail {
        println!("\nexample:\n    {}", s.example);
    }
}
