// Command loadplot turns the JSON reports of "provider-host bench" (written by scripts/loadtest.sh)
// into the load curves of docs/performance.md: a PNG plot of throughput, latency and resident memory
// against the number of sessions, and the markdown tables between the load markers of that file.
// It lives in its own module so that its plotting dependencies stay out of Keyfort's.
package main
