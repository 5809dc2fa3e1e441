"""Opening the state database: where it lives, its settings, migrations and refusals."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

import shoal.store
from shoal.errors import ShoalError, StoreError, StoreVersionError
from shoal.store import SCHEMA_VERSION, Store, default_db_path, state_dir
from shoal.store.database import Database
from shoal.store.migrations import MIGRATIONS, Migration, check, pending

EXPECTED_TABLES = {
    "revisions",
    "instances",
    "invocations",
    "topics",
    "messages",
    "schedules",
    "job_runs",
}
EXPECTED_INDEXES = {
    "invocations_by_function",
    "messages_pending",
    "messages_by_age",
    "job_runs_by_job",
}


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def _user_version(path: Path) -> int:
    conn = _raw(path)
    try:
        version: int = conn.execute("PRAGMA user_version").fetchone()[0]
    finally:
        conn.close()
    return version


def _names(path: Path, kind: str) -> set[str]:
    conn = _raw(path)
    try:
        return {
            name
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = ? AND name NOT LIKE 'sqlite_%'",
                (kind,),
            )
        }
    finally:
        conn.close()


def test_state_dir_and_default_path_sit_beside_the_manifest() -> None:
    manifest = Path("/srv/shop/shoal.yaml")
    assert state_dir(manifest) == Path("/srv/shop/.shoal")
    assert default_db_path(manifest) == Path("/srv/shop/.shoal/state.db")
    assert default_db_path(Path("shoal.yaml")) == Path(".shoal/state.db")


def test_open_creates_folder_0700_and_file_0600(db_path: Path) -> None:
    assert not db_path.parent.exists()
    with Store.open(db_path) as store:
        assert store.path == db_path
    assert stat.S_IMODE(db_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(db_path.stat().st_mode) == 0o600


def test_open_leaves_an_existing_folder_mode_alone(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    Store.open(folder / "state.db").close()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_migrates_an_empty_database_to_the_latest_version(db_path: Path) -> None:
    with Store.open(db_path) as store:
        assert store.schema_version == SCHEMA_VERSION
    assert _user_version(db_path) == SCHEMA_VERSION
    assert _names(db_path, "table") >= EXPECTED_TABLES
    assert _names(db_path, "index") >= EXPECTED_INDEXES


def test_an_empty_existing_file_is_a_new_database(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.touch()
    with Store.open(db_path) as store:
        assert store.schema_version == SCHEMA_VERSION


def test_reopening_is_idempotent_and_keeps_data(db_path: Path) -> None:
    with Store.open(db_path) as store:
        store.ensure_topic("orders", 60.0)
        message_id = store.publish("orders", '{"n": 1}', now=10.0)
    schema_before = _schema(db_path)
    for _ in range(3):
        with Store.open(db_path) as store:
            assert store.schema_version == SCHEMA_VERSION
            assert [m.id for m in store.list_messages("orders")] == [message_id]
    assert _schema(db_path) == schema_before


def _schema(path: Path) -> list[tuple[str, str]]:
    conn = _raw(path)
    try:
        return conn.execute("SELECT name, sql FROM sqlite_master ORDER BY name").fetchall()
    finally:
        conn.close()


def test_settings_are_read_back_from_sqlite(store: Store) -> None:
    settings = store.sqlite_settings()
    assert settings["journal_mode"] == "wal"
    assert settings["synchronous"] == 2  # FULL
    assert settings["foreign_keys"] == 1
    assert settings["busy_timeout"] == 5000
    assert settings["user_version"] == SCHEMA_VERSION


def test_wal_mode_is_persistent_in_the_file(db_path: Path) -> None:
    Store.open(db_path).close()
    conn = _raw(db_path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        conn.close()


def test_busy_timeout_is_configurable(db_path: Path) -> None:
    with Store.open(db_path, busy_timeout_s=0.25) as store:
        assert store.sqlite_settings()["busy_timeout"] == 250


def test_a_newer_database_is_refused_naming_both_versions(db_path: Path) -> None:
    Store.open(db_path).close()
    conn = _raw(db_path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 7}")
    conn.close()
    with pytest.raises(StoreVersionError) as caught:
        Store.open(db_path)
    message = str(caught.value)
    assert str(SCHEMA_VERSION + 7) in message
    assert f"up to {SCHEMA_VERSION}" in message
    assert str(db_path) in message
    assert isinstance(caught.value, StoreError)
    assert caught.value.exit_code == shoal.errors.ExitCode.STATE
    assert _user_version(db_path) == SCHEMA_VERSION + 7  # untouched


@pytest.mark.parametrize("content", [b"hello", b"this is not a database\n" * 100])
def test_a_file_that_is_not_sqlite_is_refused_with_a_hint(db_path: Path, content: bytes) -> None:
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(content)
    with pytest.raises(StoreError) as caught:
        Store.open(db_path)
    message = str(caught.value)
    assert str(db_path) in message
    assert "not a" in message
    assert "move it aside" in message
    assert isinstance(caught.value.__cause__, sqlite3.DatabaseError)
    assert db_path.read_bytes() == content  # untouched


def test_a_folder_in_place_of_the_file_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / "state.db").mkdir()
    with pytest.raises(StoreError, match=r"state\.db"):
        Store.open(tmp_path / "state.db")


def test_a_file_in_place_of_the_folder_is_a_store_error(tmp_path: Path) -> None:
    (tmp_path / ".shoal").write_text("oops")
    with pytest.raises(StoreError, match="cannot create"):
        Store.open(tmp_path / ".shoal" / "state.db")


def test_a_closed_store_raises_store_error(db_path: Path) -> None:
    store = Store.open(db_path)
    assert "open" in repr(store)
    store.close()
    store.close()  # twice is harmless
    assert "closed" in repr(store)
    with pytest.raises(StoreError, match="closed"):
        store.list_topics()
    with pytest.raises(StoreError, match="closed"):
        store.ensure_topic("t", 1.0)


def test_the_shipped_migrations_are_numbered_in_order() -> None:
    check(MIGRATIONS)
    assert len(MIGRATIONS) == SCHEMA_VERSION
    assert pending(0) == MIGRATIONS
    assert pending(SCHEMA_VERSION) == ()
    with pytest.raises(ValueError, match="numbered"):
        check([MIGRATIONS[0], MIGRATIONS[0]])


_EXTRA = Migration(
    version=SCHEMA_VERSION + 1,
    summary="test: a notes table",
    statements=(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)",
        "INSERT INTO notes (text) SELECT name FROM topics",
    ),
)


def test_an_older_database_gets_only_the_missing_migrations(db_path: Path) -> None:
    with Store.open(db_path) as store:
        store.ensure_topic("kept", 60.0)
    database = Database.open(db_path, migrations=(*MIGRATIONS, _EXTRA))
    with Store(database) as store:
        assert store.schema_version == SCHEMA_VERSION + 1
        assert [t.name for t in store.list_topics()] == ["kept"]
    conn = _raw(db_path)
    try:
        assert conn.execute("SELECT text FROM notes").fetchall() == [("kept",)]
    finally:
        conn.close()
    # ... after which this shoal's own migrations are older than the file:
    with pytest.raises(StoreVersionError):
        Store.open(db_path)


def test_a_failing_migration_leaves_the_previous_version_intact(db_path: Path) -> None:
    Store.open(db_path).close()
    broken = Migration(
        version=SCHEMA_VERSION + 1,
        summary="test: broken half-way",
        statements=("CREATE TABLE half (x INTEGER)", "THIS IS NOT SQL"),
    )
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        Database.open(db_path, migrations=(*MIGRATIONS, broken))
    assert _user_version(db_path) == SCHEMA_VERSION
    assert "half" not in _names(db_path, "table")
    with Store.open(db_path) as store:  # still usable
        assert store.list_topics() == []


def test_exported_members_are_curated() -> None:
    exported = set(shoal.store.__all__)
    assert "Store" in exported
    assert all(hasattr(shoal.store, name) for name in exported)
    public = {name for name in vars(shoal.store) if not name.startswith("_")}
    modules = {"database", "migrations", "paths", "queues", "records", "rows", "store"}
    modules.add("annotations")
    assert public - modules == exported


def test_store_errors_belong_to_the_one_hierarchy() -> None:
    assert issubclass(StoreVersionError, StoreError)
    assert issubclass(StoreError, ShoalError)


def test_a_migration_may_rebuild_a_parent_table_without_cascading(db_path: Path) -> None:
    with Store.open(db_path) as store:
        store.ensure_topic("orders", 60.0)
        message_id = store.publish("orders", "1", now=0.0)
    rebuild = Migration(
        version=SCHEMA_VERSION + 1,
        summary="test: rebuild topics with a new column",
        statements=(
            "CREATE TABLE topics_new (name TEXT PRIMARY KEY, retention_s REAL NOT NULL, note TEXT)",
            "INSERT INTO topics_new (name, retention_s) SELECT name, retention_s FROM topics",
            "DROP TABLE topics",
            "ALTER TABLE topics_new RENAME TO topics",
        ),
    )
    with Store(Database.open(db_path, migrations=(*MIGRATIONS, rebuild))) as store:
        assert [m.id for m in store.list_messages("orders")] == [message_id]
        assert store.sqlite_settings()["foreign_keys"] == 1
        assert store.delete_topic("orders") is True  # and the cascade works again
        assert store.get_message(message_id) is None


def test_a_migration_that_breaks_foreign_keys_is_rolled_back(db_path: Path) -> None:
    with Store.open(db_path) as store:
        store.ensure_topic("orders", 60.0)
        store.publish("orders", "1", now=0.0)
    orphaning = Migration(
        version=SCHEMA_VERSION + 1,
        summary="test: orphans messages",
        statements=("DELETE FROM topics",),
    )
    with pytest.raises(StoreError, match="foreign keys"):
        Database.open(db_path, migrations=(*MIGRATIONS, orphaning))
    with Store.open(db_path) as store:
        assert [t.name for t in store.list_topics()] == ["orders"]
        assert store.depth("orders") == 1
