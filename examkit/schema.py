"""Case database schema, as numbered migrations. Labs query these tables directly:
names and meanings are a contract (docs/case-database.md)."""

from __future__ import annotations

SCHEMA_VERSION = 7

MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE case_info (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    case_number TEXT NOT NULL,
    title TEXT,
    agency TEXT,
    examiner TEXT,
    created_utc TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    examkit_version TEXT NOT NULL
);
CREATE TABLE schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_utc TEXT NOT NULL,
    examkit_version TEXT NOT NULL
);
CREATE TABLE evidence (
    evidence_id TEXT PRIMARY KEY,
    description TEXT,
    source_paths TEXT NOT NULL,          -- JSON list of absolute paths (every segment)
    container TEXT NOT NULL,             -- container plugin: raw | split-raw | ewf ...
    container_metadata TEXT,             -- JSON: what the container says (E01 header values)
    media_size INTEGER NOT NULL,
    sector_size INTEGER,
    media_md5 TEXT, media_sha1 TEXT, media_sha256 TEXT,
    acquisition_md5 TEXT, acquisition_sha1 TEXT, acquisition_sha256 TEXT,
    acquisition_source TEXT,             -- container | examiner
    verification TEXT NOT NULL DEFAULT 'not_checked',
        -- match | mismatch | not_verifiable | not_checked
    verification_detail TEXT,
    verified_utc TEXT,
    added_utc TEXT NOT NULL,
    added_by TEXT,
    scan_status TEXT NOT NULL DEFAULT 'not_scanned',
        -- not_scanned | planning | hashing | complete | failed
    planned INTEGER NOT NULL DEFAULT 0   -- 1 once every volume and file system is listed
);
CREATE TABLE runs (
    run_id INTEGER PRIMARY KEY,
    command TEXT NOT NULL,
    command_line TEXT NOT NULL,          -- JSON list (argv)
    examiner TEXT,
    os_user TEXT,
    host TEXT,
    pid INTEGER,
    started_utc TEXT NOT NULL,
    finished_utc TEXT,
    status TEXT NOT NULL,                -- running | complete | interrupted | failed
    error TEXT,
    resumed_run_id INTEGER REFERENCES runs(run_id),
    evidence_ids TEXT,                   -- JSON list
    options TEXT,                        -- JSON
    examkit_version TEXT NOT NULL,
    python_version TEXT,
    tool_versions TEXT,                  -- JSON: TSK, libewf, libmagic ...
    plugin_versions TEXT,                -- JSON: {"kind/name": "version (distribution)"}
    counts TEXT                          -- JSON
);
CREATE TABLE volumes (
    volume_id INTEGER PRIMARY KEY,
    evidence_id TEXT NOT NULL REFERENCES evidence(evidence_id),
    idx INTEGER NOT NULL,
    kind TEXT NOT NULL,                  -- partition | unallocated | meta | whole
    system TEXT,                         -- dos | gpt | ... ; NULL: no partition table
    start_offset INTEGER NOT NULL,       -- bytes
    length INTEGER NOT NULL,             -- bytes
    description TEXT,
    slot INTEGER,
    walked INTEGER NOT NULL DEFAULT 0,
    UNIQUE (evidence_id, idx)
);
CREATE TABLE filesystems (
    filesystem_id INTEGER PRIMARY KEY,
    evidence_id TEXT NOT NULL REFERENCES evidence(evidence_id),
    volume_id INTEGER NOT NULL REFERENCES volumes(volume_id),
    walker TEXT,                         -- plugin that opened it
    fs_type TEXT,                        -- ntfs | fat32 | ext4 | ... ; NULL when none found
    offset INTEGER NOT NULL,
    block_size INTEGER,
    block_count INTEGER,
    label TEXT,
    status TEXT NOT NULL,                -- ok | error (nothing recognised or corrupt)
    error TEXT,
    entries INTEGER
);
CREATE TABLE files (
    file_id INTEGER PRIMARY KEY,
    evidence_id TEXT NOT NULL REFERENCES evidence(evidence_id),
    volume_id INTEGER REFERENCES volumes(volume_id),
    filesystem_id INTEGER REFERENCES filesystems(filesystem_id),
    seq INTEGER NOT NULL,                -- listing order within the file system
    path TEXT NOT NULL,                  -- absolute in its file system; ':stream' for streams
    name TEXT NOT NULL,
    path_bytes BLOB,                     -- exact bytes when the path is not valid UTF-8
    name_bytes BLOB,
    stream TEXT,                         -- NTFS stream name; NULL for the default stream
    attr_type INTEGER,
    attr_id INTEGER,
    inode INTEGER,
    meta_type TEXT,                      -- file | dir | link | virtual | ...
    size INTEGER,
    allocated INTEGER NOT NULL,
    state TEXT NOT NULL,                 -- allocated | deleted | orphan
    mtime TEXT, atime TEXT, ctime TEXT, crtime TEXT,
    mime TEXT,
    extension_mismatch INTEGER,
    md5 TEXT, sha1 TEXT, sha256 TEXT,
    digests TEXT,                        -- JSON: digests of third-party hashers
    bytes_read INTEGER,
    status TEXT NOT NULL,
        -- pending | ok | short | error | no_content | no_metadata | reallocated
    error TEXT,
    parent_file_id INTEGER REFERENCES files(file_id),
    run_id INTEGER REFERENCES runs(run_id),
    UNIQUE (filesystem_id, seq)
);
CREATE INDEX files_evidence ON files(evidence_id, status);
CREATE INDEX files_md5 ON files(md5);
CREATE INDEX files_sha1 ON files(sha1);
CREATE INDEX files_sha256 ON files(sha256);
CREATE TABLE custody_log (
    seq INTEGER PRIMARY KEY,
    utc TEXT NOT NULL,
    actor TEXT,
    action TEXT NOT NULL,
    details TEXT NOT NULL,               -- canonical JSON
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER custody_log_no_update BEFORE UPDATE ON custody_log
BEGIN SELECT RAISE(ABORT, 'custody_log is append-only'); END;
CREATE TRIGGER custody_log_no_delete BEFORE DELETE ON custody_log
BEGIN SELECT RAISE(ABORT, 'custody_log is append-only'); END;
""",
    2: """
CREATE TABLE hashsets (
    hashset_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,                  -- known_bad | known_good
    format TEXT NOT NULL,                -- loader plugin: vics | nsrl-v3 | md5sum ...
    description TEXT,
    source_name TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,         -- of the file imported
    source_size INTEGER,
    entries INTEGER NOT NULL,
    algorithms TEXT NOT NULL,            -- JSON: {"md5": {"count": n, "unique": u}, ...}
    version TEXT,                        -- the set's own version (NSRL release, VICS version)
    provenance TEXT,                     -- JSON: what the file says about itself
    category_profile TEXT,               -- JSON: the profile that labels categories
    imported_utc TEXT NOT NULL,
    imported_by TEXT,
    first_used_utc TEXT NOT NULL,
    first_used_run_id INTEGER REFERENCES runs(run_id),
    UNIQUE (name, source_sha256)
);
CREATE TABLE matches (
    match_id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL REFERENCES files(file_id),
    hashset_id INTEGER NOT NULL REFERENCES hashsets(hashset_id),
    kind TEXT NOT NULL,                  -- known_bad | known_good (copied from the set)
    algorithm TEXT NOT NULL,             -- md5 | sha1 | sha256
    digest TEXT NOT NULL,                -- lowercase hex
    entry INTEGER NOT NULL,              -- entry number in the compiled set
    distance INTEGER NOT NULL DEFAULT 0, -- 0 for exact; Hamming distance for pdq / phash
    alert INTEGER NOT NULL,              -- 1: flags the file (known-bad, alerting category)
    category INTEGER,                    -- raw category number from the set
    category_label TEXT,                 -- from the set's category profile
    series TEXT,
    victim_identified INTEGER,
    offender_identified INTEGER,
    is_distributed INTEGER,
    media_id TEXT,
    entry_name TEXT,                     -- the set's name for the entry (withheld like file names)
    entry_size INTEGER,
    size_matches INTEGER,                -- 1/0 when the set gives a size, else NULL
    metadata TEXT,                       -- JSON: every other field of the entry
    run_id INTEGER REFERENCES runs(run_id),
    matched_utc TEXT NOT NULL,
    UNIQUE (file_id, hashset_id, algorithm, entry)
);
CREATE INDEX matches_file ON matches(file_id);
CREATE INDEX matches_hashset ON matches(hashset_id);
ALTER TABLE files ADD COLUMN flagged INTEGER NOT NULL DEFAULT 0;
ALTER TABLE files ADD COLUMN known_good INTEGER NOT NULL DEFAULT 0;
CREATE INDEX files_flagged ON files(evidence_id) WHERE flagged = 1;
""",
    3: """
CREATE TABLE signing_keys (
    key_id TEXT PRIMARY KEY,             -- SHA-256 of the raw Ed25519 public key
    public_key TEXT NOT NULL,            -- raw public key, hex
    examiner TEXT,
    added_utc TEXT NOT NULL
);
CREATE TABLE signatures (
    sig_id INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL REFERENCES custody_log(seq),
    entry_hash TEXT NOT NULL,            -- the custody entry's hash that was signed
    key_id TEXT NOT NULL REFERENCES signing_keys(key_id),
    signature TEXT NOT NULL,             -- Ed25519 over the ASCII of entry_hash, hex
    signed_utc TEXT NOT NULL
);
CREATE TRIGGER signing_keys_no_update BEFORE UPDATE ON signing_keys
BEGIN SELECT RAISE(ABORT, 'signing_keys is append-only'); END;
CREATE TRIGGER signing_keys_no_delete BEFORE DELETE ON signing_keys
BEGIN SELECT RAISE(ABORT, 'signing_keys is append-only'); END;
CREATE TRIGGER signatures_no_update BEFORE UPDATE ON signatures
BEGIN SELECT RAISE(ABORT, 'signatures is append-only'); END;
CREATE TRIGGER signatures_no_delete BEFORE DELETE ON signatures
BEGIN SELECT RAISE(ABORT, 'signatures is append-only'); END;
""",
    4: """
ALTER TABLE files ADD COLUMN pdq TEXT;                 -- PDQ, 64 hex digits
ALTER TABLE files ADD COLUMN pdq_quality INTEGER;      -- 0-100; below 50 PDQ is not matched
ALTER TABLE files ADD COLUMN phash TEXT;               -- pHash (imagehash), 16 hex digits
ALTER TABLE files ADD COLUMN dhash TEXT;               -- dHash (imagehash), 16 hex digits
ALTER TABLE files ADD COLUMN image_status TEXT;        -- ok | truncated | corrupt | bomb
                                                       -- | too_large | unsupported | error;
                                                       -- NULL: not an image
ALTER TABLE files ADD COLUMN image_detail TEXT;        -- why an image has no perceptual hashes
ALTER TABLE files ADD COLUMN image_width INTEGER;      -- as stored, before the reduced decode
ALTER TABLE files ADD COLUMN image_height INTEGER;
ALTER TABLE files ADD COLUMN image_hashes TEXT;        -- JSON: other image-hasher plugins' values
CREATE INDEX files_images ON files(evidence_id) WHERE pdq IS NOT NULL OR phash IS NOT NULL;
""",
    5: """
ALTER TABLE files ADD COLUMN archive_format TEXT;      -- archive plugin that read its members
ALTER TABLE files ADD COLUMN archive_status TEXT;      -- ok | bomb | corrupt | too_deep
                                                       -- | encrypted; NULL: not an archive
ALTER TABLE files ADD COLUMN archive_detail TEXT;      -- why the expansion stopped
ALTER TABLE files ADD COLUMN archive_members INTEGER;  -- members recorded under it
CREATE INDEX files_parent ON files(parent_file_id) WHERE parent_file_id IS NOT NULL;
""",
    6: """
ALTER TABLE volumes ADD COLUMN parent_volume_id INTEGER REFERENCES volumes(volume_id);
                                                       -- the volume a layer opened this one from
ALTER TABLE volumes ADD COLUMN layer TEXT;             -- layer plugin that recognised this region
                                                       -- (luks | bitlocker | filevault | lvm | vss)
ALTER TABLE volumes ADD COLUMN layer_type TEXT;        -- LUKS2 | BitLocker | LVM2 | VSS ...
ALTER TABLE volumes ADD COLUMN layer_detail TEXT;      -- what the layer says (cipher, protectors)
ALTER TABLE volumes ADD COLUMN identifiers TEXT;       -- JSON: LUKS UUID, BitLocker GUIDs, VG name
ALTER TABLE volumes ADD COLUMN locked INTEGER;         -- 1: encrypted and not unlocked; 0: unlocked
ALTER TABLE volumes ADD COLUMN unlocked_with TEXT;     -- the kind of secret (never the secret)
ALTER TABLE volumes ADD COLUMN layer_error TEXT;       -- why the layer could not be opened
ALTER TABLE volumes ADD COLUMN chain TEXT;             -- JSON layer steps from the media to this
                                                       -- volume's stream; NULL: the media itself
ALTER TABLE files ADD COLUMN same_content_as INTEGER;  -- a snapshot's file whose path and content
                                                       -- are those of this earlier file
""",
    7: """
ALTER TABLE filesystems ADD COLUMN details TEXT;       -- JSON: what the walker found beyond the
                                                       -- columns (APFS: volumes and snapshots)
""",
}
