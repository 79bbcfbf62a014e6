//! The pass registry: name → factory. Built-in passes and plugin passes register the
//! same way.

use super::options::{OptionSpec, PassOptions};
use super::pipeline::PipelineEntry;
use super::Pass;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

pub type PassFactory = Box<dyn Fn(&PassOptions) -> Result<Box<dyn Pass>> + Send + Sync>;

#[derive(Debug, Clone)]
pub struct PassInfo {
    pub name: String,
    pub summary: String,
    pub options: Vec<OptionSpec>,
    /// `built-in` or the plugin library path.
    pub origin: String,
}

#[derive(Default)]
pub struct Registry {
    entries: BTreeMap<String, (PassInfo, PassFactory)>,
}

impl Registry {
    pub fn new() -> Self {
        Registry::default()
    }
    /// A registry holding every built-in pass.
    pub fn with_builtins() -> Self {
        let mut r = Registry::new();
        crate::passes::register_builtins(&mut r);
        r
    }
    pub fn register(&mut self, info: PassInfo, factory: PassFactory) -> Result<()> {
        if let Some((old, _)) = self.entries.get(&info.name) {
            return Err(Error::user(format!(
                "pass '{}' from {} clashes with the pass of the same name from {}",
                info.name, info.origin, old.origin
            )));
        }
        self.entries.insert(info.name.clone(), (info, factory));
        Ok(())
    }
    pub fn info(&self, name: &str) -> Option<&PassInfo> {
        self.entries.get(name).map(|e| &e.0)
    }
    pub fn list(&self) -> impl Iterator<Item = &PassInfo> {
        self.entries.values().map(|e| &e.0)
    }
    /// Instantiates one pipeline entry, validating its options first.
    pub fn create(&self, entry: &PipelineEntry) -> Result<Box<dyn Pass>> {
        let (info, factory) = self.entries.get(&entry.name).ok_or_else(|| {
            let names: Vec<&str> = self.entries.keys().map(|s| s.as_str()).collect();
            Error::usage(format!("unknown pass '{}'; available passes: {}", entry.name, names.join(", ")))
        })?;
        entry.options.validate(&info.options)?;
        factory(&entry.options)
    }
}
