//! A progress bar for long runs of the pass: shown only when stderr is a
//! terminal and `--quiet` is not given, so logs and pipes never see it.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;
use wasm_rewind_transform::{Instrument, Instrumented, Options};

/// Runs the pass on `wasm`, with a spinner and bar on a terminal.
pub fn instrument(
    wasm: &[u8],
    options: &Options,
    quiet: bool,
    label: &str,
) -> wasm_rewind_transform::Result<Instrumented> {
    let builder = Instrument::from_options(options.clone());
    if quiet || !std::io::stderr().is_terminal() {
        return builder.run(wasm);
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{elapsed}] {wide_bar} {pos}/{len}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("instrumenting {label}"));
    bar.enable_steady_tick(Duration::from_millis(120));
    let handle = bar.clone();
    let result = builder
        .progress(move |done, total| {
            handle.set_length(total as u64);
            handle.set_position(done as u64);
        })
        .run(wasm);
    // Nothing of the bar stays on screen: the output, warnings and --stats
    // follow on clean lines.
    bar.finish_and_clear();
    result
}
