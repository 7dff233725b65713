//! Loading ELF objects: their maps created with kernel semantics, their programs loaded against them,
//! program arrays preset from the object, each program's type taken from its section name.

use crate::{Error, LoadedProgram, ProgType, Runtime};
use moat_maps::{Map, MapDef, MapError, MapMemory, MapType};
use moat_obj::{GlobalVar, MapSpec, Object};
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
    /// (privileged unless set otherwise; `Off` is treated as privileged). Program types come from
    /// the section names as for a load: a section that names no type, or one moat does not run
    /// (fentry, fexit, lsm, ...), is that program's error ([`Error::UnknownSection`],
    /// [`Error::UnsupportedProgType`]) unless `options` give the type.
    pub fn verify_object(
        &self,
        bytes: &[u8],
        options: ObjectOptions,
    ) -> Result<Vec<(String, Verdict)>, Error> {
        self.verify_object_each(bytes, options, |_, _| {})
    }

    /// [`Runtime::verify_object`], calling `progress` with each program's name and verdict as
    /// soon as it is verified (for progress reports on large objects).
    pub fn verify_object_each(
        &self,
        bytes: &[u8],
        options: ObjectOptions,
        mut progress: impl FnMut(&str, &Verdict),
    ) -> Result<Vec<(String, Verdict)>, Error> {
        let object = Object::parse(bytes)?;
        let mut maps: Vec<moat_verify::MapInfo> = object
            .maps
            .iter()
            .map(|spec| {
                let mut info = crate::verifying::spec_info(spec);
                // Pool maps are read-only for programs' direct accesses; atomics apply in place.
                let pooled = self.in_pool(spec);
                info.read_only |= pooled;
                info.atomic_in_place = pooled;
                info
            })
            .collect();
        crate::verifying::add_inner_maps(&mut maps, &object.maps);
        let mode = self.verification;
        Ok(object
            .programs
            .iter()
            .map(|spec| {
                let verdict = (|| {
                    // Sections name program types as for a load: an unknown section or a type
                    // moat does not support (fentry, lsm, ...) fails by name here too.
                    let prog_type = program_type(spec, options)?;
                    if let Some(u) = spec.unresolved.first() {
                        return Err(Error::Unresolved {
                            program: spec.name.clone(),
                            symbol: u.symbol.clone(),
                            insn: u.insn,
                        });
                    }
                    let program = moat_isa::Program::new_for_verifier(&spec.bytecode)?;
                    let context = crate::verifying::context(
                        prog_type,
                        self.buffer_size.unwrap_or(0),
                        Some(&spec.section),
                    );
                    crate::verifying::verify(
                        &program,
                        mode,
                        (
                            prog_type,
                            crate::verifying::ObjectFacts {
                                license: object.license.as_deref(),
                                section: Some(&spec.section),
                            },
                        ),
                        context,
                        maps.clone(),
                        &self.helpers,
                        &self.protos,
                        self.verifier_log,
                    )
                    .map_err(Error::Verify)
                })()
                .map_err(|e| with_source_line(e, spec));
                progress(&spec.name, &verdict);
                (spec.name.clone(), verdict)
            })
            .collect())
    }

    /// Parses an ELF object, creates its maps (global data initialised) and loads every program:
    /// [`Runtime::open_object`] then [`OpenObject::load`], with `options`.
    ///
    /// With a pool set ([`Runtime::set_pool`]), maps declared with `LIBBPF_PIN_BY_NAME` or named with
    /// [`Runtime::set_pool_maps`] are the pool's maps of their names ([`Runtime::pool_map`]).
    ///
    /// A program that cannot be loaded (say, it calls an undefined function, or its section names
    /// no program type moat runs) does not fail the object: [`LoadedObject::program`] reports its
    /// error. Program arrays preset in the object (`.values = { [i] = &prog }`) are filled with
    /// the programs' ids.
    pub fn load_object(&self, bytes: &[u8], options: ObjectOptions) -> Result<LoadedObject, Error> {
        let mut open = self.open_object(bytes)?;
        open.options = options;
        open.load()
    }

    /// Parses an ELF object without creating or loading anything, for settings before the load
    /// (libbpf's skeleton `open`): global variables by name, map contents, program array slots and
    /// per-load options, then [`OpenObject::load`] verifies and loads every program.
    ///
    /// ```
    /// let rt = moat::Runtime::new();
    /// let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/c/globals.o"))
    ///     .unwrap();
    /// let mut open = rt.open_object(&bytes).unwrap();
    /// open.set_global("multiplier", &10u32.to_ne_bytes()).unwrap();
    /// let obj = open.load().unwrap();
    /// let prog = obj.program("use_globals").unwrap();
    /// // 60 bytes of packet times 10, plus 100 earlier runs.
    /// assert_eq!(prog.run(&mut [0u8; 60]).unwrap(), 700);
    /// ```
    pub fn open_object(&self, bytes: &[u8]) -> Result<OpenObject, Error> {
        Ok(OpenObject {
            rt: self.clone(),
            object: Object::parse(bytes)?,
            options: ObjectOptions::default(),
            updates: Vec::new(),
            slots: Vec::new(),
            map_memory: None,
        })
    }
}

/// A parsed object not loaded yet ([`Runtime::open_object`]): set globals, map contents, program
/// array slots and load options, then [`OpenObject::load`]. Options set here apply to this load
/// only; those not set are the runtime's.
#[derive(Debug)]
pub struct OpenObject {
    rt: Runtime,
    object: Object,
    options: ObjectOptions,
    /// Map updates to apply once the maps exist: (map index, key, value).
    updates: Vec<(usize, Vec<u8>, Vec<u8>)>,
    /// Program array slots to fill once the programs are loaded: (map index, slot, program).
    slots: Vec<(usize, u32, String)>,
    /// Where maps get their storage instead of the domain ([`OpenObject::set_map_memory`]).
    map_memory: Option<HookSlot>,
}

/// Chooses a map's storage ([`OpenObject::set_map_memory`]): called with the map's index in the
/// object, its definition and the memory it would get otherwise (its domain's, `None` for the
/// heap); returns the memory to use, or `None` to keep the default.
pub type MapMemoryHook = Arc<
    dyn Fn(usize, &MapDef, Option<Arc<dyn MapMemory>>) -> Option<Arc<dyn MapMemory>> + Send + Sync,
>;

/// A [`MapMemoryHook`] in a field of a `Debug` struct.
#[derive(Clone)]
struct HookSlot(MapMemoryHook);

impl std::fmt::Debug for HookSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MapMemoryHook")
    }
}

impl OpenObject {
    /// The parsed object.
    pub fn object(&self) -> &Object {
        &self.object
    }

    /// Sets the type of every program, overriding what section names say (`--type`).
    pub fn set_prog_type(&mut self, prog_type: ProgType) -> &mut Self {
        self.options.prog_type = Some(prog_type);
        self
    }

    /// Sets how this object's programs are verified ([`Verification::Off`] is the explicit choice
    /// of running unverified).
    pub fn set_verification(&mut self, verification: crate::Verification) -> &mut Self {
        self.rt.verification = verification;
        self
    }

    /// Sets the input size buffer programs are verified for (by default the size of the structure
    /// their first parameter points to, from BTF, else 0).
    pub fn set_buffer_size(&mut self, size: u64) -> &mut Self {
        self.rt.buffer_size = Some(size);
        self
    }

    /// Sets the engine this object's programs run with.
    pub fn set_engine(&mut self, engine: crate::Engine) -> &mut Self {
        self.rt.engine = engine;
        self
    }

    /// Sets how this object is isolated.
    pub fn set_isolation(&mut self, isolation: moat_isolate::Isolation) -> &mut Self {
        self.rt.isolation = isolation;
        self
    }

    /// Keeps the verifier's per-instruction log.
    pub fn set_verifier_log(&mut self, log: bool) -> &mut Self {
        self.rt.verifier_log = log;
        self
    }

    fn map_index(&self, name: &str) -> Result<usize, Error> {
        self.object
            .maps
            .iter()
            .position(|m| m.name == name)
            .ok_or_else(|| Error::NoSuchMap {
                name: name.to_string(),
                available: self.object.maps.iter().map(|m| m.name.clone()).collect(),
            })
    }

    /// The global variable `name` (of `.data`, `.rodata`, `.bss` or their `.*` variants, from
    /// BTF): its map and its description.
    pub fn global(&self, name: &str) -> Result<(&MapSpec, &GlobalVar), Error> {
        self.object
            .maps
            .iter()
            .find_map(|m| m.vars.iter().find(|v| v.name == name).map(|v| (m, v)))
            .ok_or_else(|| Error::NoSuchGlobal {
                name: name.to_string(),
                available: self
                    .object
                    .maps
                    .iter()
                    .flat_map(|m| m.vars.iter().map(|v| v.name.clone()))
                    .collect(),
            })
    }

    /// Sets global variable `name` to `value` (its size in bytes, native byte order) before
    /// verification: `const volatile` configuration in `.rodata` included, as with a libbpf
    /// skeleton's `rodata` before `load`.
    pub fn set_global(&mut self, name: &str, value: &[u8]) -> Result<&mut Self, Error> {
        let (map, var) = self.global(name)?;
        if value.len() != var.size as usize {
            return Err(Error::BadValue {
                what: format!("global `{name}` ({})", var.ty.c_name()),
                reason: format!("{} bytes given, {} expected", value.len(), var.size),
            });
        }
        let (map_name, offset) = (map.name.clone(), var.offset as usize);
        let index = self.map_index(&map_name)?;
        let spec = self.object.maps.get_mut(index);
        let target = spec
            .and_then(|m| m.data.get_mut(offset..offset + value.len()))
            .ok_or_else(|| Error::BadValue {
                what: format!("global `{name}`"),
                reason: format!("outside its section `{map_name}`"),
            })?;
        target.copy_from_slice(value);
        Ok(self)
    }

    /// Sets global variable `name` from text, parsed as its C type ([`moat_obj::CType::parse`]:
    /// decimal, `0x` hex, strings, `{..}` structs).
    pub fn set_global_text(&mut self, name: &str, text: &str) -> Result<&mut Self, Error> {
        let (_, var) = self.global(name)?;
        let bytes = var.ty.parse(text).map_err(|e| Error::BadValue {
            what: format!("global `{name}`"),
            reason: e.to_string(),
        })?;
        self.set_global(name, &bytes)
    }

    /// Stores `key` → `value` in map `map` once it is created, before any program is verified
    /// (per-CPU maps: `value` for every CPU, or every CPU's copy).
    pub fn set_map_entry(
        &mut self,
        map: &str,
        key: &[u8],
        value: &[u8],
    ) -> Result<&mut Self, Error> {
        let index = self.map_index(map)?;
        self.updates.push((index, key.to_vec(), value.to_vec()));
        Ok(self)
    }

    /// Puts program `program` of this object in slot `index` of program array `map` once both
    /// are loaded (what `bpf_map_update_elem(prog_array, &index, &prog_fd)` does with libbpf).
    pub fn set_prog_array_slot(
        &mut self,
        map: &str,
        index: u32,
        program: &str,
    ) -> Result<&mut Self, Error> {
        let map_index = self.map_index(map)?;
        if self.object.maps.get(map_index).map(|m| m.map_type) != Some(MapType::ProgArray.as_u32())
        {
            return Err(Error::BadValue {
                what: format!("map `{map}`"),
                reason: "not a prog_array".to_string(),
            });
        }
        self.object
            .program(program)
            .map_err(|_| Error::NoSuchProgram {
                name: program.to_string(),
                available: self
                    .object
                    .programs
                    .iter()
                    .map(|p| p.name.clone())
                    .collect(),
            })?;
        self.slots.push((map_index, index, program.to_string()));
        Ok(self)
    }

    /// Lets `hook` choose the storage of every map this load creates (maps from a pool excepted):
    /// shared memory another process reads, say (`moat trace`). The memory it returns must be
    /// reachable by the object's programs like the domain's (the domain's own ranges, mapped
    /// differently, or `None` to keep them).
    pub fn set_map_memory(&mut self, hook: MapMemoryHook) -> &mut Self {
        self.map_memory = Some(HookSlot(hook));
        self
    }

    /// Creates the maps (with the globals and entries set), verifies and loads every program.
    pub fn load(self) -> Result<LoadedObject, Error> {
        self.load_each(|_, _| {})
    }

    /// [`OpenObject::load`], calling `progress` with each program's name and outcome as soon as it
    /// is loaded (for progress reports on large objects).
    pub fn load_each(
        self,
        mut progress: impl FnMut(&str, Result<&LoadedProgram, &Error>),
    ) -> Result<LoadedObject, Error> {
        let OpenObject {
            rt,
            object,
            options,
            updates,
            slots,
            map_memory,
        } = self;
        // One domain per object: its programs share its maps, which live in the domain.
        let domain = rt.new_domain()?;
        let mut maps = Vec::with_capacity(object.maps.len());
        for spec in &object.maps {
            let map_error = |source| Error::Map {
                name: spec.name.clone(),
                source,
            };
            let def = map_def(spec).map_err(map_error)?;
            if rt.in_pool(spec) {
                maps.push(rt.pool_map(def)?);
                continue;
            }
            let default = domain.as_ref().map(|d| d.memory());
            let chosen = map_memory
                .as_ref()
                .and_then(|hook| (hook.0)(maps.len(), &def, default.clone()));
            let map = match chosen.or(default) {
                Some(memory) => Map::create_in(def, memory),
                None => Map::create(def),
            }
            .map_err(map_error)?;
            if !spec.data.is_empty() {
                map.update(&0u32.to_ne_bytes(), &spec.data, moat_abi::BPF_ANY)
                    .map_err(map_error)?;
            }
            maps.push(Arc::new(map));
        }
        for (index, key, value) in &updates {
            if let (Some(map), Some(spec)) = (maps.get(*index), object.maps.get(*index)) {
                set_entry(map, key, value).map_err(|source| Error::Map {
                    name: spec.name.clone(),
                    source,
                })?;
            }
        }
        let implemented = rt.implemented_helpers();
        let mut programs = Vec::with_capacity(object.programs.len());
        let license = object.license.as_deref();
        // (Without a `license` section the loader states the license to the kernel: like bytecode
        // loaded on its own, such an object may call GPL-only helpers.)
        for spec in &object.programs {
            let loaded = rt
                .load_spec(spec, options, license, &maps, domain.clone(), &implemented)
                .map_err(Arc::new);
            progress(&spec.name, loaded.as_ref().map_err(|e| &**e));
            programs.push(loaded);
        }
        let loaded = LoadedObject {
            object,
            maps,
            programs,
        };
        loaded.preset_program_arrays()?;
        for (map_index, slot, program) in &slots {
            let prog = loaded.program(program)?;
            if let (Some(map), Some(spec)) = (
                loaded.maps.get(*map_index),
                loaded.object.maps.get(*map_index),
            ) {
                map.update(
                    &slot.to_ne_bytes(),
                    &prog.id().to_ne_bytes(),
                    moat_abi::BPF_ANY,
                )
                .map_err(|source| Error::Map {
                    name: spec.name.clone(),
                    source,
                })?;
            }
        }
        Ok(loaded)
    }
}

/// Stores an entry set before the load: for per-CPU maps a single value goes to every CPU.
fn set_entry(map: &Map, key: &[u8], value: &[u8]) -> Result<(), MapError> {
    let value_size = map.def().value_size as usize;
    if map.map_type().is_percpu() && value.len() == value_size {
        for cpu in 0..map.cpus() {
            map.update_on_cpu(key, value, moat_abi::BPF_ANY, cpu)?;
        }
        return Ok(());
    }
    map.update(key, value, moat_abi::BPF_ANY)
}

/// The type of program `spec`: the override, moat's own `moat/…` sections (generic buffer
/// programs), else what libbpf makes of the section name; an error for sections libbpf does not
/// know and for program types moat does not run.
pub(crate) fn program_type(
    spec: &moat_obj::ProgramSpec,
    options: ObjectOptions,
) -> Result<ProgType, Error> {
    if let Some(t) = options.prog_type {
        return Ok(t);
    }
    if spec.section.starts_with("moat/") {
        return Ok(ProgType::Buffer);
    }
    let unsupported = |kind: String| Error::UnsupportedProgType {
        program: spec.name.clone(),
        section: spec.section.clone(),
        kind,
    };
    let Some(def) = moat_abi::section_def(&spec.section) else {
        return Err(Error::UnknownSection {
            program: spec.name.clone(),
            section: spec.section.clone(),
        });
    };
    // fentry/fexit and friends take the traced kernel function's arguments, described by kernel
    // BTF that a userspace host does not have.
    if let Some(attach) = def.attach_type {
        use moat_abi::AttachType as A;
        if matches!(
            attach,
            A::TraceFentry | A::TraceFexit | A::ModifyReturn | A::LsmMac | A::TraceIter
        ) {
            return Err(unsupported(format!(
                "{} ({})",
                def.prog_type.name(),
                attach.name()
            )));
        }
    }
    ProgType::from_section(&spec.section)
        .ok_or_else(|| unsupported(def.prog_type.name().to_string()))
}

impl Runtime {
    /// Every helper a program loaded by this runtime can call (the standard and embedder helpers
    /// and the ones bound to each program's maps).
    pub(crate) fn implemented_helpers(&self) -> moat_exec::HelperRegistry {
        let mut registry = self.helpers.clone();
        let table = Arc::new(crate::MapTable::new(Vec::new()));
        let class = crate::load::TailClass {
            prog_type: crate::ProgType::Buffer,
            input_bytes: 0,
        };
        crate::maphelpers::register(
            &mut registry,
            &table,
            (std::sync::Weak::new(), class),
            &self.stacks,
        );
        registry
    }

    /// Loads one program of an object against the object's maps.
    fn load_spec(
        &self,
        spec: &moat_obj::ProgramSpec,
        options: ObjectOptions,
        license: Option<&str>,
        maps: &[Arc<Map>],
        domain: Option<moat_isolate::Domain>,
        implemented: &moat_exec::HelperRegistry,
    ) -> Result<LoadedProgram, Error> {
        let in_program = |e: Error| with_source_line(e, spec).in_program(&spec.name);
        let prog_type = program_type(spec, options)?;
        if let Some(u) = spec.unresolved.first() {
            return Err(Error::Unresolved {
                program: spec.name.clone(),
                symbol: u.symbol.clone(),
                insn: u.insn,
            });
        }
        check_helpers(&spec.bytecode, implemented).map_err(in_program)?;
        // A buffer program's input is the structure its first parameter points to (BTF).
        let sized;
        let rt = match (&spec.context_type, prog_type, self.buffer_size) {
            (Some(t), ProgType::Buffer, None) => {
                let mut rt = self.clone();
                rt.buffer_size = Some(u64::from(t.size()));
                sized = rt;
                &sized
            }
            _ => self,
        };
        let facts = crate::verifying::ObjectFacts {
            license,
            section: Some(&spec.section),
        };
        rt.load_in(&spec.bytecode, prog_type, facts, maps, domain)
            .map(|mut p| {
                p.guard = Arc::new(p.guard.renamed(&spec.name));
                p
            })
            .map_err(in_program)
    }
}

/// Refuses a call of a helper moat does not implement, naming it, before verification (the
/// verifier knows the kernel's prototypes of helpers moat cannot run).
pub(crate) fn check_helpers(
    bytecode: &[u8],
    implemented: &moat_exec::HelperRegistry,
) -> Result<(), Error> {
    let Ok(insns) = moat_isa::decode(bytecode) else {
        // Malformed bytecode: verification says where.
        return Ok(());
    };
    for (pc, insn) in insns {
        if let moat_isa::Insn::Call(moat_isa::CallTarget::Helper(id)) = insn {
            let id = id.cast_unsigned();
            if implemented.get(id).is_none() {
                return Err(Error::UnsupportedHelper {
                    pc,
                    id,
                    name: moat_abi::HelperId::from_u32(id).map(|h| h.name().to_string()),
                });
            }
        }
    }
    Ok(())
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

    /// The map named `name`, or [`Error::NoSuchMap`] listing the maps there are (as
    /// [`LoadedObject::program`] fails for programs).
    pub fn map(&self, name: &str) -> Result<&Arc<Map>, Error> {
        self.maps()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| m)
            .ok_or_else(|| Error::NoSuchMap {
                name: name.to_string(),
                available: self.object.maps.iter().map(|m| m.name.clone()).collect(),
            })
    }
}
