/* cz_serve: `compressd serve`, the daemon process: state, API server, worker, signals.
 * Runs on the main thread and returns the process exit code. */
#ifndef CZ_SERVE_H
#define CZ_SERVE_H

int cz_serve_main(int argc, char **argv);

#endif
