pub mod migrate;
pub mod up;
