// The fleet's policy tables and the gateways table's policy columns
// (docs/fleet.md, "Policy versions and fleet status"): SQL text only, shared
// by the gateways (control/fleet/policy_sync.cpp) and the fleet controller
// (sekishoctl fleet), which links libpq but not the control library.
//
// Who owns what, so that the roles stay apart (docs/security.md):
// - The controller (role sekisho_controller, `sekishoctl fleet policy push`
//   and `rollout`) creates policy_versions and group_desired and owns them;
//   it grants SELECT on them to sekisho_gateway and sekisho_desk. A gateway
//   never creates them: a gateway that owned them could write policy.
// - The gateways (role sekisho_gateway) own the gateways table
//   (ensure_fleet_schema) and add its policy columns when missing; the one
//   that adds them grants SELECT on it to sekisho_desk and
//   sekisho_controller (fleet status, rollout's watch). Columns present
//   already are not altered (a table created by another role stays usable).
// Every statement is idempotent; grants go only to roles that exist.
//
// policy_versions: every policy ever pushed, numbered by the store
//   (bigserial, so numbers only grow and a rollback is a new version with
//   old text). group_desired: the version each group should run.
#pragma once

namespace sekisho::fleet_sql {

// Serialises schema changes of gateways and controllers starting together.
inline constexpr const char* schema_lock = "SELECT pg_advisory_xact_lock(x'7365736b69736f'::bigint)";

// Run by the controller, in a transaction after schema_lock.
inline constexpr const char* create_policy_tables =
    "CREATE TABLE IF NOT EXISTS policy_versions ("
    " version bigserial PRIMARY KEY,"
    " grp text NOT NULL,"
    " text text NOT NULL,"
    " author text NOT NULL,"
    " created timestamptz NOT NULL DEFAULT now());"
    "CREATE TABLE IF NOT EXISTS group_desired ("
    " grp text PRIMARY KEY,"
    " version bigint NOT NULL REFERENCES policy_versions (version));"
    "DO $$ BEGIN"
    " IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sekisho_gateway') THEN"
    "  GRANT SELECT ON policy_versions, group_desired TO sekisho_gateway; END IF;"
    " IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sekisho_desk') THEN"
    "  GRANT SELECT ON policy_versions, group_desired TO sekisho_desk; END IF;"
    " END $$";

// Run by a gateway, in a transaction after schema_lock (the gateways table
// exists: ensure_fleet_schema).
inline constexpr const char* add_gateway_policy_columns =
    "ALTER TABLE gateways"
    " ADD COLUMN IF NOT EXISTS generation_in_force bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS fleet_version_in_force bigint NOT NULL DEFAULT 0,"
    " ADD COLUMN IF NOT EXISTS health jsonb NOT NULL DEFAULT '{}'::jsonb,"
    " ADD COLUMN IF NOT EXISTS last_error text NOT NULL DEFAULT '';"
    "DO $$ BEGIN"
    " IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sekisho_desk') THEN"
    "  GRANT SELECT ON gateways TO sekisho_desk; END IF;"
    " IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'sekisho_controller') THEN"
    "  GRANT SELECT ON gateways TO sekisho_controller; END IF;"
    " END $$";

// How many of the four policy columns the gateways table has (4: nothing to add).
inline constexpr const char* count_gateway_policy_columns =
    "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema()"
    " AND table_name = 'gateways' AND column_name IN"
    " ('generation_in_force', 'fleet_version_in_force', 'health', 'last_error')";

}  // namespace sekisho::fleet_sql
