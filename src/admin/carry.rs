//! What the operator changed through the runtime API, kept by backend and server name so
//! that a reload carries it over (HAProxy needs a `server-state-file` for that; without
//! one, a server put in MAINT comes back into service at the next reload).
//!
//! The control thread records each `set weight` and `set server ... state` here; a reload
//! applies the record to the new configuration before its shards start, as each server's
//! `start_weight` and `start_admin`. A change is carried only while the file still says
//! what it said when the operator made it: a server whose `weight` (or `disabled`) was
//! edited in the file takes the file's new value, and its record is dropped. Plain data,
//! tested without sockets.

use std::collections::HashMap;

use crate::config::{Config, Server};
use crate::upstream::health::Admin;

/// One server's runtime changes, with what the file said when they were made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Changed {
    file_weight: u32,
    file_disabled: bool,
    weight: Option<u32>,
    admin: Option<Admin>,
}

/// The operator's runtime changes, by (backend, server) name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Carried {
    servers: HashMap<(String, String), Changed>,
}

impl Carried {
    fn entry(&mut self, backend: &str, server: &Server) -> &mut Changed {
        self.servers
            .entry((backend.to_owned(), server.name.clone()))
            .or_insert(Changed {
                file_weight: server.weight,
                file_disabled: server.disabled,
                weight: None,
                admin: None,
            })
    }

    /// The operator set `server`'s weight (of backend `backend`) to `weight`.
    pub fn set_weight(&mut self, backend: &str, server: &Server, weight: u32) {
        self.entry(backend, server).weight = Some(weight);
    }

    /// The operator set `server`'s administrative state.
    pub fn set_admin(&mut self, backend: &str, server: &Server, admin: Admin) {
        self.entry(backend, server).admin = Some(admin);
    }

    /// Applies the changes to `config`'s servers of the same names whose file values did
    /// not change, and returns what is carried (the record for the new configuration).
    pub fn apply(&self, config: &mut Config) -> Carried {
        let mut kept = Carried::default();
        for backend in &mut config.backends {
            for server in &mut backend.servers {
                let key = (backend.name.clone(), server.name.clone());
                let Some(changed) = self.servers.get(&key) else {
                    continue;
                };
                let mut carried = Changed {
                    file_weight: server.weight,
                    file_disabled: server.disabled,
                    weight: None,
                    admin: None,
                };
                if changed.file_weight == server.weight {
                    server.start_weight = changed.weight;
                    carried.weight = changed.weight;
                }
                if changed.file_disabled == server.disabled {
                    server.start_admin = changed.admin;
                    carried.admin = changed.admin;
                }
                if carried.weight.is_some() || carried.admin.is_some() {
                    kept.servers.insert(key, carried);
                }
            }
        }
        kept
    }

    /// How many servers have a change recorded.
    pub fn len(&self) -> usize {
        self.servers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(weights: &[(&str, u32, bool)]) -> Config {
        let mut toml = String::from(
            "[[frontend]]\nname = \"f\"\nbind = [\"127.0.0.1:0\"]\nmode = \"http\"\nbackend = \"b\"\n\
             [[backend]]\nname = \"b\"\nmode = \"http\"\n",
        );
        for (name, weight, disabled) in weights {
            toml.push_str(&format!(
                "[[backend.server]]\nname = \"{name}\"\naddress = \"127.0.0.1:1\"\nweight = {weight}\ndisabled = {disabled}\n"
            ));
        }
        Config::parse(&toml, "test.toml".as_ref()).unwrap()
    }

    #[test]
    fn changes_carry_while_the_file_says_the_same() {
        let old = config(&[("s0", 10, false), ("s1", 10, false), ("s2", 10, false)]);
        let b = &old.backends[0];
        let mut carried = Carried::default();
        carried.set_weight("b", &b.servers[0], 3);
        carried.set_admin("b", &b.servers[1], Admin::Maint);
        carried.set_admin("b", &b.servers[2], Admin::Drain);
        carried.set_weight("b", &b.servers[2], 0);

        // Same file: everything carries, and carries again at the next reload.
        let mut new = config(&[("s0", 10, false), ("s1", 10, false), ("s2", 10, false)]);
        let kept = carried.apply(&mut new);
        let s = &new.backends[0].servers;
        assert_eq!((s[0].start_weight, s[0].start_admin), (Some(3), None));
        assert_eq!(
            (s[1].start_weight, s[1].start_admin),
            (None, Some(Admin::Maint))
        );
        assert_eq!(
            (s[2].start_weight, s[2].start_admin),
            (Some(0), Some(Admin::Drain))
        );
        assert_eq!(kept, carried);

        // The file changed s0's weight and s1's `disabled`, and s2 is gone: the file wins,
        // and only what still carries stays recorded.
        let mut edited = config(&[("s0", 20, false), ("s1", 10, true), ("s3", 10, false)]);
        let kept = kept.apply(&mut edited);
        let s = &edited.backends[0].servers;
        assert_eq!((s[0].start_weight, s[0].start_admin), (None, None));
        assert_eq!((s[1].start_weight, s[1].start_admin), (None, None));
        assert_eq!((s[2].start_weight, s[2].start_admin), (None, None));
        assert!(kept.is_empty());
    }

    #[test]
    fn a_server_in_another_backend_with_the_same_name_is_another_server() {
        let old = config(&[("s0", 10, false)]);
        let mut carried = Carried::default();
        carried.set_admin("other", &old.backends[0].servers[0], Admin::Maint);
        let mut new = config(&[("s0", 10, false)]);
        assert!(carried.apply(&mut new).is_empty());
        assert_eq!(new.backends[0].servers[0].start_admin, None);
    }
}
