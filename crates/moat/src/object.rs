//! Loading ELF objects: their maps created with kernel semantics, their programs loaded against them,
//! program arrays preset from the object, each program's type taken from its section name.

use crate::{Error, LoadedProgram, ProgType, Runtime};
use moat_maps::{Map, MapDef, MapError, MapType};
use moat_obj::{MapSpec, Object};
use std::sync::Arc;

/// How to load an object.
#[derive(Debug, Clone, Copy, Default)]
pub struct ObjectOptions {
    /// The type of every program, overriding what section names say (`--type`).
    pub prog_type: Option<ProgType>,
}

/// An object whose maps exist and whose programs are loaded.
#[derive(Debug)]
pub struct LoadedObject {
    object: Object,
    maps: Vec<Arc<Map>>,
    programs: Vec<Result<LoadedProgram, Arc<Error>>>,
}

fn map_def(spec: &MapSpec) -> Result<MapDef, MapError> {
    let map_type = MapType::try_from(spec.map_type)?;
    Ok(
        MapDef::new(map_type, spec.key_size, spec.value_size, spec.max_entries)
            .with_flags(spec.flags)
            .with_name(spec.name.clone()),
    )
}

/// The verdict on one program of an object verified without loading it.
pub type Verdict = Result<moat_verify::VerifiedProgram, Error>;

impl Runtime {
    /// Verifies every program of an object without creating its maps or loading anything: the
    /// verifier needs only the maps' descriptions, so this works for objects whose map types moat
    /// cannot create (perf event arrays, devmaps, ...). Uses this runtime's verification rules
    /// (privileged unless set otherwise; `Off` is treated as privileged).
    pub fn verify_object(
        &self,
        bytes: &[u8],
        options: ObjectOptions,
    ) -> Result<Vec<(String, Verdict)>, Error> {
        let object = Object::parse(bytes)?;
        let maps: Vec<moat_verify::MapInfo> = object
            .maps
            .iter()
            .map(|spec| {
                let mut info = crate::verifying::spec_info(spec);
                // Pool maps are read-only for programs' direct accesses.
                info.read_only |= self.in_pool(spec);
                info
            })
            .collect();
        let mode = self.verification;
        Ok(object
            .programs
            .iter()
            .map(|spec| {
                let prog_type = options
                    .prog_type
                    .or_else(|| ProgType::from_section(&spec.section))
                    .unwrap_or(ProgType::Buffer);
                let verdict = (|| {
                    if let Some(u) = spec.unresolved.first() {
                        return Err(Error::Unresolved {
                            program: spec.name.clone(),
                            symbol: u.symbol.clone(),
                            insn: u.insn,
                        });
                    }
                    let program = moat_isa::Program::new_for_verifier(&spec.bytecode)?;
                    let context =
                        crate::verifying::context(prog_type, self.buffer_size.unwrap_or(0));
                    crate::verifying::verify(
                        &program,
                        mode,
                        context,
                        maps.clone(),
                        &self.helpers,
                        &self.protos,
                        self.verifier_log,
                    )
                    .map_err(Error::Verify)
                })()
                .map_err(|e| with_source_line(e, spec));
                (spec.name.clone(), verdict)
            })
            .collect())
    }

    /// Parses an ELF object, creates its maps (global data initialised) and loads every program.
    ///
    /// With a pool set ([`Runtime::set_pool`]), maps declared with `LIBBPF_PIN_BY_NAME` or named with
    /// [`Runtime::set_pool_maps`] are the pool's maps of their names ([`Runtime::pool_map`]).
    ///
    /// A program that cannot be loaded (say, it calls an undefined function) does not fail the
    /// object: [`LoadedObject::program`] reports its error. Program arrays preset in the object
    /// (`.values = { [i] = &prog }`) are filled with the programs' ids.
    pub fn load_object(&self, bytes: &[u8], options: ObjectOptions) -> Result<LoadedObject, Error> {
        let object = Object::parse(bytes)?;
        // One domain per object: its programs share its maps, which live in the domain.
        let domain = self.new_domain()?;
        let mut maps = Vec::with_capacity(object.maps.len());
        for spec in &object.maps {
            let map_error = |source| Error::Map {
                name: spec.name.clone(),
                source,
            };
            let def = map_def(spec).map_err(map_error)?;
            if self.in_pool(spec) {
                maps.push(self.pool_map(def)?);
                continue;
            }
            let map = match &domain {
                Some(d) => Map::create_in(def, d.memory()),
                None => Map::create(def),
            }
            .map_err(map_error)?;
            if !spec.data.is_empty() {
                map.update(&0u32.to_ne_bytes(), &spec.data, moat_abi::BPF_ANY)
                    .map_err(map_error)?;
            }
            maps.push(Arc::new(map));
        }
        let programs = object
            .programs
            .iter()
            .map(|spec| {
                let prog_type = options
                    .prog_type
                    .or_else(|| ProgType::from_section(&spec.section))
                    .unwrap_or(ProgType::Buffer);
                if let Some(u) = spec.unresolved.first() {
                    return Err(Arc::new(Error::Unresolved {
                        program: spec.name.clone(),
                        symbol: u.symbol.clone(),
                        insn: u.insn,
                    }));
                }
                self.load_in(&spec.bytecode, prog_type, &maps, domain.clone())
                    .map(|mut p| {
                        p.guard = Arc::new(p.guard.renamed(&spec.name));
                        p
                    })
                    .map_err(|e| Arc::new(with_source_line(e, spec).in_program(&spec.name)))
            })
            .collect::<Vec<_>>();
        let loaded = LoadedObject {
            object,
            maps,
            programs,
        };
        loaded.preset_program_arrays()?;
        Ok(loaded)
    }
}

/// Adds the C source line (from BTF line info) to a verifier rejection.
fn with_source_line(error: Error, spec: &moat_obj::ProgramSpec) -> Error {
    match error {
        Error::Verify(mut rejection) => {
            if let Some(l) = spec.line_at(rejection.error.pc) {
                rejection.error.line = Some(format!("{}:{}: {}", l.file, l.line, l.text.trim()));
            }
            Error::Verify(rejection)
        }
        other => other,
    }
}

impl LoadedObject {
    fn preset_program_arrays(&self) -> Result<(), Error> {
        for (spec, map) in self.object.maps.iter().zip(&self.maps) {
            if map.map_type() != MapType::ProgArray {
                continue;
            }
            for slot in &spec.initial_slots {
                let Ok(prog) = self.program(&slot.symbol) else {
                    continue;
                };
                map.update(
                    &slot.slot.to_ne_bytes(),
                    &prog.id().to_ne_bytes(),
                    moat_abi::BPF_ANY,
                )
                .map_err(|source| Error::Map {
                    name: spec.name.clone(),
                    source,
                })?;
            }
        }
        Ok(())
    }

    /// The parsed object (programs' specs, maps' specs, sections, line info).
    pub fn object(&self) -> &Object {
        &self.object
    }

    /// The program named `name` (its function symbol, or its section where it has none), or why it
    /// could not be loaded.
    pub fn program(&self, name: &str) -> Result<&LoadedProgram, Error> {
        let index = self
            .object
            .programs
            .iter()
            .position(|p| p.name == name)
            .or_else(|| self.object.programs.iter().position(|p| p.section == name))
            .ok_or_else(|| Error::NoSuchProgram {
                name: name.to_string(),
                available: self
                    .object
                    .programs
                    .iter()
                    .map(|p| p.name.clone())
                    .collect(),
            })?;
        match self.programs.get(index) {
            Some(Ok(p)) => Ok(p),
            Some(Err(e)) => Err(Error::ProgramUnavailable {
                name: name.to_string(),
                source: e.clone(),
            }),
            None => Err(Error::NoSuchProgram {
                name: name.to_string(),
                available: Vec::new(),
            }),
        }
    }

    /// The programs in object order, loaded or not.
    pub fn programs(&self) -> impl Iterator<Item = (&str, Result<&LoadedProgram, &Error>)> {
        self.object
            .programs
            .iter()
            .zip(&self.programs)
            .map(|(spec, p)| (spec.name.as_str(), p.as_ref().map_err(|e| &**e)))
    }

    /// The maps in object order.
    pub fn maps(&self) -> impl Iterator<Item = (&str, &Arc<Map>)> {
        self.object
            .maps
            .iter()
            .map(|s| s.name.as_str())
            .zip(&self.maps)
    }

    /// The map named `name`.
    pub fn map(&self, name: &str) -> Option<&Arc<Map>> {
        self.maps().find(|(n, _)| *n == name).map(|(_, m)| m)
    }
}
