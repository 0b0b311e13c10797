// Package runner is OmniQ's task loop. A Runner pulls the tasks of every
// function its plugins serve, runs each in its plugin process, and records
// the outcome: success, a retry after backoff, or the dead-letter stream
// with the TaskError that ended it.
//
// # One task's life in the runner
//
//  1. Pull: one durable pull consumer per function (omniq-<function>),
//     shared by every runner; never more tasks fetched than there are free
//     slots to run them.
//  2. Claim: the task's state moves to running by compare-and-swap. The
//     delivered message is judged against the state: the next attempt is
//     claimed; a stale copy, a finished or cancelled task is dropped; a
//     redelivery of a task whose runner died is taken over, counting an
//     interruption rather than a retry.
//  3. Run: the plugin host runs the attempt with its deadline while the
//     message is kept alive with heartbeats.
//  4. Record: success stores the result; a retryable failure with budget
//     left becomes retrying and is rescheduled (a JetStream message
//     schedule, or a short NakWithDelay under a second); anything else
//     becomes failed and is dead-lettered. The state is written first and
//     the message settled last, so a runner dying at any step leaves a
//     redelivery that completes the job.
//
// Cancellation moves the state to cancelled and notifies the runner
// holding the task, which cancels the handler's context. Stop drains
// gracefully and releases unfinished tasks for redelivery. Tasks of
// functions no live runner serves are swept to the dead-letter stream as
// unknown_function.
package runner
