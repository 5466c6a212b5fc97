//! Placeholder: the runtime shim is built in a later issue (see DESIGN.md, "The runtime shim").
