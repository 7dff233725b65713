//! Program files the CLI accepts, recognised by content and extension: conformance data files,
//! assembly text and raw bytecode.

use anyhow::{Context, Result};
use moat::{DataFile, LoadedProgram, Runtime};
use std::path::Path;

/// A program file, read and classified, with its path for error messages.
pub struct Input {
    path: String,
    kind: Kind,
}

enum Kind {
    /// A conformance test file.
    Data(DataFile),
    /// Assembly source.
    Asm(String),
    /// Raw bytecode.
    Bytecode(Vec<u8>),
}

impl Input {
    /// Reads and classifies `path`: `.data` files are conformance tests, `.bin`/`.bpf` files and any
    /// non-text file are bytecode, other text is assembly.
    pub fn read(path: &Path) -> Result<Input> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {name}"))?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let kind = if matches!(ext, "bin" | "bpf") {
            Kind::Bytecode(bytes)
        } else {
            match String::from_utf8(bytes) {
                Ok(text) if ext == "data" => {
                    Kind::Data(DataFile::parse(&text).with_context(|| name.clone())?)
                }
                Ok(text) => Kind::Asm(text),
                Err(e) => Kind::Bytecode(e.into_bytes()),
            }
        };
        Ok(Input { path: name, kind })
    }

    /// The input memory the file itself provides (a data file's `-- mem`), else none.
    pub fn default_mem(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Data(d) => d.mem.clone(),
            _ => Vec::new(),
        }
    }

    /// The program's bytecode.
    pub fn bytecode(&self) -> Result<Vec<u8>> {
        let bytes = match &self.kind {
            Kind::Data(d) => d.program()?,
            Kind::Asm(text) => moat_isa::assemble_bytes(text)?,
            Kind::Bytecode(b) => b.clone(),
        };
        Ok(bytes)
    }

    /// The path the input was read from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Loads the program into `rt`.
    pub fn load(&self, rt: &Runtime) -> Result<LoadedProgram> {
        let bytes = self.bytecode().with_context(|| self.path.clone())?;
        rt.load_bytecode(&bytes).with_context(|| self.path.clone())
    }
}
