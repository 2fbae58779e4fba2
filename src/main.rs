//! The `meal` binary: parse the command line, run, and turn errors into one clear message.

fn main() {
    if let Err(err) = meal::cli::main() {
        eprintln!("error: {err}");
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            eprintln!("  caused by: {cause}");
            source = cause.source();
        }
        std::process::exit(match err {
            meal::Error::Interrupted(_) => 130,
            _ => 1,
        });
    }
}
