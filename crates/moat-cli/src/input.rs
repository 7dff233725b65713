//! Program files the CLI accepts, recognised by content and extension: conformance data files,
//! assembly text and raw bytecode.

use anyhow::{Context, Result};
use moat::{DataFile, LoadedProgram, Runtime};
use std::path::Path;

/// A program file, read and classified.
pub enum Input {
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
        let name = path.display();
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {name}"))?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if matches!(ext, "bin" | "bpf") {
            return Ok(Input::Bytecode(bytes));
        }
        match String::from_utf8(bytes) {
            Ok(text) if ext == "data" => Ok(Input::Data(
                DataFile::parse(&text).with_context(|| format!("{name}"))?,
            )),
            Ok(text) => Ok(Input::Asm(text)),
            Err(e) => Ok(Input::Bytecode(e.into_bytes())),
        }
    }

    /// The input memory the file itself provides (a data file's `-- mem`), else none.
    pub fn default_mem(&self) -> Vec<u8> {
        match self {
            Input::Data(d) => d.mem.clone(),
            _ => Vec::new(),
        }
    }

    /// The program's bytecode.
    pub fn bytecode(&self) -> Result<Vec<u8>> {
        Ok(match self {
            Input::Data(d) => d.program()?,
            Input::Asm(text) => moat_isa::assemble_bytes(text)?,
            Input::Bytecode(b) => b.clone(),
        })
    }

    /// Loads the program into `rt`.
    pub fn load(&self, rt: &Runtime) -> Result<LoadedProgram> {
        Ok(rt.load_bytecode(&self.bytecode()?)?)
    }
}
