//! `skiff-hv`: the hypervisor helper of `skiffd`. libvirt runs here, in a child process of the
//! agent, so that `skiffd` itself never maps libvirt and its libraries (see
//! `skiff_nodeagent::compute::helper` for why and for the protocol). Not meant to be run by hand:
//!
//! - `skiff-hv serve --uri URI --accelerator A --log-dir DIR`: answers hypervisor calls read from
//!   stdin on stdout, and forwards libvirt's domain lifecycle events there too;
//! - `skiff-hv console NAME --uri URI ...`: joins domain NAME's serial console to stdin/stdout.
//!
//! Both end when stdin ends. Log lines go to stderr (the agent's log).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use skiff_cluster::config::Accelerator;
use skiff_nodeagent::compute::helper::{server, write_line, ToAgent};
use skiff_nodeagent::compute::libvirt::LibvirtHypervisor;
use skiff_nodeagent::compute::libvirt_events::LibvirtEvents;
use skiff_nodeagent::compute::HypervisorError;
use tracing::warn;
use tracing_subscriber::EnvFilter;

#[derive(Parser, Debug)]
#[command(
    name = "skiff-hv",
    version,
    about = "The hypervisor helper of skiffd (started by skiffd; not run by hand)"
)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    /// libvirt's URI.
    #[arg(long, global = true, default_value = "qemu:///system")]
    uri: String,
    /// How guests run: auto, kvm or tcg.
    #[arg(long, global = true, default_value = "auto", value_parser = accelerator)]
    accelerator: Accelerator,
    /// Where serial consoles are logged.
    #[arg(long, global = true, default_value = "console")]
    log_dir: PathBuf,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Answer hypervisor calls on stdin/stdout.
    Serve,
    /// Join a domain's serial console to stdin/stdout.
    Console { name: String },
}

fn accelerator(s: &str) -> Result<Accelerator, String> {
    match s {
        "auto" => Ok(Accelerator::Auto),
        "kvm" => Ok(Accelerator::Kvm),
        "tcg" => Ok(Accelerator::Tcg),
        _ => Err(format!("{s:?} is not one of auto, kvm, tcg")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let hypervisor = LibvirtHypervisor::connect(&cli.uri, cli.accelerator, &cli.log_dir);
    let result = match cli.mode {
        Mode::Serve => {
            let h = match hypervisor {
                Ok(h) => h,
                Err(e) => {
                    let _ = write_line(&mut std::io::stdout(), &ToAgent::Fatal(e.to_string()));
                    return ExitCode::FAILURE;
                }
            };
            // Kept until the end: dropping it stops the events.
            let (listener, events) = match LibvirtEvents::start(&cli.uri) {
                Ok((l, rx)) => (Some(l), Some(rx)),
                Err(e) => {
                    warn!(uri = %cli.uri, error = %e, "no libvirt lifecycle events: the leader notices changes at its next pass");
                    (None, None)
                }
            };
            let r = server::serve(
                Arc::new(h),
                events,
                std::io::stdin().lock(),
                std::io::stdout(),
            );
            drop(listener);
            r
        }
        Mode::Console { name } => match hypervisor {
            Ok(h) => server::console(&h, &name, std::io::stdin(), std::io::stdout()),
            Err(e) => write_line(
                &mut std::io::stdout(),
                &Err::<(), _>(HypervisorError::Failed(e.to_string())),
            ),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            warn!(error = %e, "skiff-hv stops");
            ExitCode::FAILURE
        }
    }
}
