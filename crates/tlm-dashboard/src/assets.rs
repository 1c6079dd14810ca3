//! The page, embedded in the binary. (Placeholder until the page lands.)

/// The content type and bytes of the file served at `path`.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    match path {
        "/" => Some(("text/html; charset=utf-8", b"<!doctype html><title>tlm dashboard</title>")),
        _ => None,
    }
}
