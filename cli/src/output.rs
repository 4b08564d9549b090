//! Lines on stdout. A reader that stops reading (`iptrack queues | head -1`) closes the
//! pipe, and `println!` panics on the next line; Unix tools end quietly instead, and so
//! does `iptrack` (status 0: what was asked for was shown). Any other failure to write is
//! one line on stderr and status 1.

use std::io::{self, Write};

/// Writes `args` and a newline to stdout; see the module documentation for failures.
pub fn line(args: std::fmt::Arguments<'_>) {
    let mut stdout = io::stdout().lock();
    let written = writeln!(stdout, "{args}").and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(error) => {
            eprintln!("iptrack: cannot write to stdout: {error}");
            std::process::exit(1);
        }
    }
}

/// `println!` for the command's results, through [`line`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::line(format_args!($($arg)*))
    };
}
pub(crate) use say;
