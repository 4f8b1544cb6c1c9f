use thiserror::Error;

#[derive(Debug, Error)]
pub enum PlanFileError {
    #[error("cannot read plan file `{path}`")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a sealer plan file: {message}")]
    Format { path: String, message: String },
    #[error("plan file `{path}` is corrupted: its checksum does not match its content")]
    Checksum { path: String },
}
