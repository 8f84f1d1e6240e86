"""The stage kit: what the stage modules of step/ share (their list, stamps, the stage table, scoring,
confident labels, S11's derived settings). A kit module never imports a stage module (docs/ARCHITECTURE.md)."""
