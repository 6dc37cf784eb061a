// Package steps holds the provisioning steps (registry, database, migrations, kubernetes, dns, admin
// user, welcome email, rate-limit purge), each with an idempotent do and undo, and the Catalog that
// orders them into the creation, deletion and update sagas of each tenancy model.
package steps
