//! `embed_migrations!` reads `migrations/` at compile time but does not tell cargo so:
//! without this, a new migration would not be embedded until something else in this
//! crate changed.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
