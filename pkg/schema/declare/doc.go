// Package declare computes and applies a declarative schema change: the
// difference between the live database and the one the release's files
// produce (a shadow database, see schema.Importer.Shadow).
//
// Tables, columns, defaults, constraints, indexes and foreign keys are
// compared with Atlas's open-source PostgreSQL packages; functions,
// triggers and views, which those do not cover, by their catalog
// definitions (pg_get_functiondef, pg_get_triggerdef, pg_get_viewdef).
// What adds is planned, each statement with its hazard (a lock, a table
// rewrite); what would lose data (dropping a table or column, a type
// change without a safe cast, NOT NULL on a column that holds NULLs) or
// a rule the rows follow is refused, named schema.table.column with the
// declaration that allows it (renames, drops). Apply runs a plan in one
// transaction under the agent's schema lock with a lock timeout.
//
// Reference tables (schema.referenceData) receive the files' rows live
// lacks, by primary key.
//
// declare must never drop a table, a column or a rule the rows follow
// (unique index, foreign key, check, primary key) the manifest did not
// declare, insert a row outside a reference table, update or delete a
// row, or apply part of a plan.
package declare
