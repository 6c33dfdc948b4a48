// Package web is the master's face to people and scripts: the REST API
// under /api/v1/, the server-rendered web UI at /, live updates, health
// and metrics.
//
// Everything it shows is read from the store on each request, never from
// the memory of the master that answers, so any master of a cluster gives
// the same answer and a retired entity disappears from every master's
// pages as soon as the generation that retired it is applied. Live
// updates follow the same rule: the build page's event stream polls the
// store a few times a second, so it shows a build's log whichever master
// the worker reports to.
//
// Actions (force, cancel, rebuild) change the database and then call the
// configured wake-up, so that this master's dispatch looks at once; other
// masters see the change on their next look.
//
// # Routes
//
// The REST API follows the contract in DESIGN.md: JSON with snake_case
// fields, lists as {"items": [...], "next": CURSOR_OR_NULL} where the
// cursor is passed back as ?before=, and errors as {"error": "..."}.
//
//	GET  /api/v1/builders[?include=retired]
//	GET  /api/v1/builders/{name}[?include=retired]
//	POST /api/v1/builders/{name}/force           {"reason", "properties"}
//	GET  /api/v1/builds[?builder=&state=&before=&limit=]
//	GET  /api/v1/builds/{id}
//	POST /api/v1/builds/{id}/cancel              {"reason"} (optional)
//	POST /api/v1/builds/{id}/rebuild
//	GET  /api/v1/builds/{id}/steps
//	GET  /api/v1/builds/{id}/steps/{number}
//	GET  /api/v1/builds/{id}/steps/{number}/log[?offset=&follow=1]
//	GET  /api/v1/builds/{id}/events[?offsets=STEP:OFFSET,...]  (Server-Sent Events)
//	GET  /api/v1/buildsets, /api/v1/buildsets/{id}
//	GET  /api/v1/requests[?builder=&state=], /api/v1/requests/{id}
//	POST /api/v1/requests/{id}/cancel            {"reason"} (optional)
//	GET  /api/v1/changes, /api/v1/changes/{id}
//	GET  /api/v1/workers[?include=retired], /api/v1/workers/{name}
//	GET  /api/v1/config/generations, /api/v1/config/generations/{number}
//
// A path number that is not a positive whole number (a step's, zero or
// more), or a filter or paging parameter outside the values it takes,
// answers 400 saying what was wrong: in JSON from the API, as a page from
// the UI, whose lists take ?before= and ?limit= as the API's do. Only an
// object that does not exist answers 404.
//
// Paths under /api/v1/ that this package does not serve answer 404 in
// JSON; handlers for other resources (webhooks, masters, services) are
// mounted in front of it on more specific patterns.
//
// The UI lives at /, with its assets embedded under /static/; /healthz
// answers "ok" while the database does, and /metrics serves Prometheus
// metrics from a registry of the server's own.
package web
