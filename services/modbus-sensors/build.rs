//! Release links place the functions the service runs side by side (see tolomeo-build).

fn main() {
    tolomeo_build::hot_text();
}
