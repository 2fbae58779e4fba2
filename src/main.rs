//! The `meal` binary: parse the command line, run, and turn errors into one clear message.

fn main() {
    // SAFETY: nothing else runs yet.
    unsafe { meal::backend::ensure_runtime_dir() };
    meal::backend::note_runtime_errors();
    if let Err(err) = meal::cli::main() {
        let message = err.to_string();
        eprintln!("error: {message}");
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            // Transparent wrappers repeat their inner message; print only what is new.
            let text = cause.to_string();
            if !message.contains(&text) {
                eprintln!("  caused by: {text}");
            }
            source = cause.source();
        }
        std::process::exit(match err {
            meal::Error::Interrupted(_) => 130,
            _ => 1,
        });
    }
}
