"""The lxdex node: durable storage, sequencing and gateways around the exchange.

Storage (this package's foundation, see docs/journal.md):

- `lxdex.node.journal`: the append-only, checksummed, group-committed command
  log (`Journal`, `JournalCorrupt`);
- `lxdex.node.snapshots`: atomic, verified state snapshots (`SnapshotStore`).

Recovery is: load `SnapshotStore.latest()`, then replay `Journal.read(seq + 1)`.
Submodules are imported on use; importing `lxdex.node` itself is cheap.
"""
