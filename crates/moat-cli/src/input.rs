//! Program files the CLI accepts, recognised by content and extension: ELF objects, conformance data
//! files, assembly text and raw bytecode.

use crate::setup::Setup;
use anyhow::{bail, Context, Result};
use moat::{DataFile, LoadedObject, LoadedProgram, Object, ObjectOptions, Runtime};
use std::path::Path;

/// A program file, read and classified, with its path for error messages.
pub struct Input {
    path: String,
    kind: Kind,
}

enum Kind {
    /// An ELF object.
    Object(Vec<u8>),
    /// A conformance test file.
    Data(DataFile),
    /// Assembly source.
    Asm(String),
    /// Raw bytecode.
    Bytecode(Vec<u8>),
}

/// A loaded program, with the object it came from (whose maps it uses), if any.
pub enum Loaded {
    /// A program from an object.
    FromObject(LoadedObject, String),
    /// A standalone program.
    Standalone(Box<LoadedProgram>),
}

impl Loaded {
    /// The program to run.
    pub fn program(&self) -> Result<&LoadedProgram> {
        match self {
            Loaded::FromObject(obj, name) => Ok(obj.program(name)?),
            Loaded::Standalone(p) => Ok(p),
        }
    }

    /// The maps the program uses, with their names and the C types BTF gives their keys and
    /// values.
    pub fn maps(&self) -> Vec<crate::report::TypedMap> {
        match self {
            Loaded::FromObject(obj, _) => obj
                .maps()
                .map(|(n, m)| {
                    let spec = obj.object().maps.iter().find(|s| s.name == n);
                    let (k, v) =
                        spec.map_or((None, None), |s| (s.key_type.clone(), s.value_type.clone()));
                    (n.to_string(), m.clone(), k, v)
                })
                .collect(),
            Loaded::Standalone(p) => p
                .maps()
                .iter()
                .map(|m| (m.name().to_string(), m.clone(), None, None))
                .collect(),
        }
    }
}

impl Input {
    /// Reads and classifies `path`: ELF files are objects, `.data` files conformance tests, `.bin`
    /// and `.bpf` files and any other non-text file bytecode, other text assembly.
    pub fn read(path: &Path) -> Result<Input> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {name}"))?;
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        let kind = if bytes.starts_with(b"\x7fELF") {
            Kind::Object(bytes)
        } else if matches!(ext, "bin" | "bpf") {
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

    /// The path the input was read from.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The input memory the file itself provides (a data file's `-- mem`), else none.
    pub fn default_mem(&self) -> Vec<u8> {
        match &self.kind {
            Kind::Data(d) => d.mem.clone(),
            _ => Vec::new(),
        }
    }

    /// The raw bytes of an object file.
    pub fn object_bytes(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Object(bytes) => Some(bytes),
            _ => None,
        }
    }

    /// The parsed object, for object files.
    pub fn object(&self) -> Result<Option<Object>> {
        match &self.kind {
            Kind::Object(bytes) => Ok(Some(
                Object::parse(bytes).with_context(|| self.path.clone())?,
            )),
            _ => Ok(None),
        }
    }

    /// The program's bytecode (for an object, program `program`'s, linked and relocated).
    pub fn bytecode(&self, program: Option<&str>) -> Result<Vec<u8>> {
        let bytes = match &self.kind {
            Kind::Data(d) => d.program().with_context(|| self.path.clone())?,
            Kind::Asm(text) => moat_isa::assemble_bytes(text).with_context(|| self.path.clone())?,
            Kind::Bytecode(b) => b.clone(),
            Kind::Object(_) => {
                let Some(obj) = self.object()? else {
                    bail!("not an object")
                };
                let name = choose_program(&obj, program, &self.path)?;
                let spec = obj.program(&name).with_context(|| self.path.clone())?;
                spec.bytecode.clone()
            }
        };
        Ok(bytes)
    }

    /// Loads the program into `rt`: for an object, every program and map (set up as `setup`
    /// says first), then picks `program`.
    pub fn load(
        &self,
        rt: &Runtime,
        options: ObjectOptions,
        program: Option<&str>,
        setup: &Setup,
    ) -> Result<Loaded> {
        if let Kind::Object(bytes) = &self.kind {
            let mut open = rt.open_object(bytes).with_context(|| self.path.clone())?;
            if let Some(prog_type) = options.prog_type {
                open.set_prog_type(prog_type);
            }
            setup.apply(&mut open).with_context(|| self.path.clone())?;
            let obj = open.load().with_context(|| self.path.clone())?;
            let name = choose_program(obj.object(), program, &self.path)?;
            return Ok(Loaded::FromObject(obj, name));
        }
        if !setup.is_empty() {
            bail!(
                "{}: --map, --global and --prog-array need an ELF object",
                self.path
            );
        }
        let bytes = self.bytecode(None)?;
        let prog_type = options.prog_type.unwrap_or(moat::ProgType::Buffer);
        let prog = rt
            .load_bytecode_as(&bytes, prog_type)
            .with_context(|| self.path.clone())?;
        Ok(Loaded::Standalone(Box::new(prog)))
    }
}

/// The program to use: the one named, or the object's only program.
pub fn choose_program(obj: &Object, wanted: Option<&str>, path: &str) -> Result<String> {
    if let Some(name) = wanted {
        return Ok(name.to_string());
    }
    match obj.programs.as_slice() {
        [only] => Ok(only.name.clone()),
        [] => bail!("{path}: the object has no programs"),
        many => bail!(
            "{path}: the object has {} programs, choose one with --program ({})",
            many.len(),
            many.iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
