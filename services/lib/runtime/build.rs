// `sqlx::migrate!` (db.rs) compiles migrations/ in, but on stable Rust the
// compiler watches only the files that were there: without this, a new
// migration would be left out until something else in this crate changed.
fn main() {
    println!("cargo:rerun-if-changed=../../../migrations");
}
