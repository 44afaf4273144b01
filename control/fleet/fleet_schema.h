// Every table of the fleet's PostgreSQL, and what each role may do with it:
// the one definition, SQL text only, included by the gateways' ensure_*
// functions (control/fleet) and by the DBA's `sekishoctl fleet schema`
// (cmd/sekishoctl), which links libpq but not the control library. The
// policy tables are in policy_schema.h, shared the same way.
//
// Two ways to deploy (docs/fleet.md, "The DBA's schema"):
// - Least privilege: a DBA runs `sekishoctl --fleet ADMIN fleet schema
//   --apply` once (and again after an upgrade). It creates every table, the
//   two event partition functions and the grants below, owned by the DBA's
//   role. The gateway and controller roles then need no CREATE on the
//   schema: each concern finds its objects present (objects_present) and
//   runs no DDL, and the gateways create and drop daily event partitions
//   through the SECURITY DEFINER functions, which can do nothing else.
// - Self-created (tests, a lab): a role with CREATE on the schema creates
//   the objects of its concern at connect, with the same statements. A role
//   that owns a table may write it, which is why a gateway never creates
//   the policy tables.
// Every statement is idempotent. Grants go only to roles that exist.
//
// What each role gets (grant_roles), and why:
//   sekisho_gateway     reads fleet_meta, the policy tables; writes its
//                       gateways row (upsert), operator_changes (INSERT, the
//                       sequence), fleet_suspensions, events (INSERT only:
//                       ON CONFLICT DO NOTHING needs no SELECT), bindings
//                       (INSERT, UPDATE, and SELECT, which ON CONFLICT DO
//                       UPDATE ... WHERE needs); EXECUTE on the partition
//                       functions.
//   sekisho_desk        SELECT on every table.
//   sekisho_controller  SELECT on fleet_meta and gateways; writes
//                       policy_versions (INSERT, the sequence) and
//                       group_desired (INSERT, UPDATE).
#pragma once

namespace sekisho::fleet_sql {

// The schema version this build writes; stored in fleet_meta. A database
// with a newer one is refused by the gateways.
inline constexpr int schema_version = 1;

// How many of the comma-separated relation and function names in $1 exist
// in the current schema. A concern runs its DDL only when some are missing.
inline constexpr const char* objects_present =
    "SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
    "  WHERE n.nspname = current_schema() AND c.relname = ANY (string_to_array($1, ',')))"
    " + (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
    "  WHERE n.nspname = current_schema() AND p.proname = ANY (string_to_array($1, ',')))";

// A concern's objects: their names (comma-separated, for objects_present),
// how many, and the statements that create them.
struct concern_objects {
    const char* names;
    int count;
    const char* create;
};

// fleet_meta (the schema version) and gateways (one row per gateway:
// ensure_fleet_schema; policy_schema.h adds the policy columns).
inline constexpr const char* create_meta_tables =
    "CREATE TABLE IF NOT EXISTS fleet_meta (key text PRIMARY KEY, value text NOT NULL);"
    "CREATE TABLE IF NOT EXISTS gateways ("
    " gateway text PRIMARY KEY,"
    " grp text NOT NULL,"
    " version text NOT NULL DEFAULT '',"
    " first_seen timestamptz NOT NULL DEFAULT now(),"
    " last_seen timestamptz NOT NULL DEFAULT now())";
inline constexpr concern_objects meta_tables = {"fleet_meta,gateways", 2, create_meta_tables};

// The operator log every gateway applies, and the suspensions in force
// (operator_sync.h).
inline constexpr const char* create_operator_tables =
    "CREATE TABLE IF NOT EXISTS operator_changes ("
    " id bigserial PRIMARY KEY,"
    " change_id text NOT NULL UNIQUE,"
    " kind text NOT NULL,"
    " account text NOT NULL DEFAULT '',"
    " prefix text NOT NULL DEFAULT '',"
    " payload jsonb NOT NULL DEFAULT '{}',"
    " gateway text NOT NULL,"
    " caller text NOT NULL,"
    " at timestamptz NOT NULL);"
    "CREATE TABLE IF NOT EXISTS fleet_suspensions ("
    " account text PRIMARY KEY,"
    " since timestamptz NOT NULL,"
    " caller text NOT NULL,"
    " reason text NOT NULL,"
    " origin_gateway text NOT NULL)";
inline constexpr concern_objects operator_tables = {"operator_changes,fleet_suspensions", 2,
                                                     create_operator_tables};

// Serialises the events schema's changes (partitions) between gateways.
inline constexpr const char* events_lock = "SELECT pg_advisory_xact_lock(x'7365736b69736f65'::bigint)";

// The events table (event_shipper.h), partitioned by UTC day. The key is a
// line's place: its gateway, its file's identity and offset; `time` is in it
// because a partitioned table's unique keys carry the partition key (a
// line's time never changes). The two functions create a day's partition
// (events_pYYYYMMDD) and drop those of days before keep_from, and nothing
// else; SECURITY DEFINER with the creator's search path, so that a gateway
// role without CREATE can keep the partitions as the table's owner would.
inline constexpr const char* create_event_tables =
    "CREATE TABLE IF NOT EXISTS events ("
    " gateway text NOT NULL,"
    " file_id bigint NOT NULL,"
    " line_offset bigint NOT NULL,"
    " time timestamptz NOT NULL,"
    " type text NOT NULL,"
    " address inet,"
    " account text,"
    " line jsonb NOT NULL,"
    " PRIMARY KEY (gateway, file_id, line_offset, time)"
    ") PARTITION BY RANGE (time);"
    "CREATE INDEX IF NOT EXISTS events_address_time ON events (address, time);"
    "CREATE INDEX IF NOT EXISTS events_account_time ON events (account, time);"
    "CREATE OR REPLACE FUNCTION sekisho_event_partition(day date) RETURNS text"
    " LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $f$"
    " DECLARE name text := 'events_p' || to_char(day, 'YYYYMMDD');"
    " BEGIN"
    "  PERFORM pg_advisory_xact_lock(x'7365736b69736f65'::bigint);"
    "  EXECUTE format('CREATE TABLE IF NOT EXISTS %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)',"
    "   name, day::text || ' 00:00:00+00', (day + 1)::text || ' 00:00:00+00');"
    "  RETURN name;"
    " END $f$;"
    "CREATE OR REPLACE FUNCTION sekisho_drop_event_partitions(keep_from date) RETURNS integer"
    " LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $f$"
    " DECLARE r record; n integer := 0;"
    " BEGIN"
    "  PERFORM pg_advisory_xact_lock(x'7365736b69736f65'::bigint);"
    "  FOR r IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
    "   WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_p[0-9]{8}$'"
    "   AND c.relname < 'events_p' || to_char(keep_from, 'YYYYMMDD') ORDER BY c.relname LOOP"
    "   EXECUTE format('DROP TABLE IF EXISTS %I', r.relname);"
    "   n := n + 1;"
    "  END LOOP;"
    "  RETURN n;"
    " END $f$;"
    "REVOKE ALL ON FUNCTION sekisho_event_partition(date), sekisho_drop_event_partitions(date) FROM PUBLIC";
inline constexpr concern_objects event_tables = {
    "events,events_address_time,events_account_time,sekisho_event_partition,sekisho_drop_event_partitions", 5,
    create_event_tables};

// The fleet's binding history (binding_shipper.h): one row per row of a
// gateway's history; GiST on prefix for whois (prefix >>= address).
inline constexpr const char* create_binding_tables =
    "CREATE TABLE IF NOT EXISTS bindings ("
    " gateway text NOT NULL,"
    " history_id bigint NOT NULL,"
    " prefix cidr NOT NULL,"
    " account text NOT NULL,"
    " session_id text NOT NULL,"
    " nas text NOT NULL,"
    " nas_identifier text NOT NULL,"
    " start timestamptz NOT NULL,"
    " stop timestamptz,"
    " closed_by text,"
    " change_seq bigint NOT NULL,"
    " shipped_at timestamptz NOT NULL DEFAULT now(),"
    " PRIMARY KEY (gateway, history_id));"
    "CREATE INDEX IF NOT EXISTS bindings_prefix ON bindings USING gist (prefix inet_ops);"
    "CREATE INDEX IF NOT EXISTS bindings_gateway_start ON bindings (gateway, start)";
inline constexpr concern_objects binding_tables = {"bindings,bindings_prefix,bindings_gateway_start", 3,
                                                    create_binding_tables};

// The three roles' privileges on every table above and the policy tables
// (run by their owner, after they exist).
inline constexpr const char* grant_roles =
    "DO $$ BEGIN"
    " IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sekisho_gateway') THEN"
    "  GRANT SELECT ON fleet_meta, policy_versions, group_desired TO sekisho_gateway;"
    "  GRANT SELECT, INSERT, UPDATE ON gateways, bindings TO sekisho_gateway;"
    "  GRANT SELECT, INSERT ON operator_changes TO sekisho_gateway;"
    "  GRANT USAGE ON SEQUENCE operator_changes_id_seq TO sekisho_gateway;"
    "  GRANT SELECT, INSERT, UPDATE, DELETE ON fleet_suspensions TO sekisho_gateway;"
    "  GRANT INSERT ON events TO sekisho_gateway;"
    "  GRANT EXECUTE ON FUNCTION sekisho_event_partition(date), sekisho_drop_event_partitions(date)"
    "   TO sekisho_gateway;"
    " END IF;"
    " IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sekisho_desk') THEN"
    "  GRANT SELECT ON fleet_meta, gateways, operator_changes, fleet_suspensions, events, bindings,"
    "   policy_versions, group_desired TO sekisho_desk;"
    " END IF;"
    " IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sekisho_controller') THEN"
    "  GRANT SELECT ON fleet_meta, gateways TO sekisho_controller;"
    "  GRANT SELECT, INSERT ON policy_versions TO sekisho_controller;"
    "  GRANT USAGE ON SEQUENCE policy_versions_version_seq TO sekisho_controller;"
    "  GRANT SELECT, INSERT, UPDATE ON group_desired TO sekisho_controller;"
    " END IF;"
    " END $$";

// The roles grant_roles knows, for the DBA tool to say which are missing.
inline constexpr const char* fleet_roles = "sekisho_gateway,sekisho_desk,sekisho_controller";

}  // namespace sekisho::fleet_sql
