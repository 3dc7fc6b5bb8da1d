-- ClickCall databases for the PostgreSQL container (docker-compose.yml mounts this folder
-- as /docker-entrypoint-initdb.d). The postgres image runs it ONCE, as the superuser, when
-- the data volume is empty; later edits need `docker compose down -v` (which deletes the data).
--
-- One role per service, each owning its own database and nothing else, so the auth server
-- cannot read the call tables and the call API cannot read users, clients or tokens.
-- Passwords come from the db container's environment (psql 15 `\getenv`); if one is unset
-- the statement fails with a syntax error at ":" and the script stops (ON_ERROR_STOP).
--
-- A DBA can run the same file by hand:
--   CLICKCALL_AUTH_DB_PASSWORD=… CLICKCALL_CALLS_DB_PASSWORD=… \
--     psql -v ON_ERROR_STOP=1 -U postgres -d postgres -f deploy/postgres-init/10-clickcall.sql
-- then create the tables with `auth-server init-db` / `call-api init-db` (or sql/*.sql).

\set ON_ERROR_STOP on
\getenv auth_password CLICKCALL_AUTH_DB_PASSWORD
\getenv calls_password CLICKCALL_CALLS_DB_PASSWORD

CREATE ROLE clickcall_auth LOGIN PASSWORD :'auth_password';
CREATE ROLE clickcall_calls LOGIN PASSWORD :'calls_password';

CREATE DATABASE clickcall_auth OWNER clickcall_auth ENCODING 'UTF8' TEMPLATE template0;
CREATE DATABASE clickcall_calls OWNER clickcall_calls ENCODING 'UTF8' TEMPLATE template0;

-- Only the owner (and superusers) may connect.
REVOKE ALL ON DATABASE clickcall_auth FROM PUBLIC;
REVOKE ALL ON DATABASE clickcall_calls FROM PUBLIC;
