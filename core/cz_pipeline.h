/* cz_pipeline: a recipe (steps + output format) planned over one input model and run as
 * independent tasks.
 *
 * Direct path (encode-only recipes: one quantize step). Every output tensor's size is known
 * at plan time, so the output file's header and every tensor's offset are fixed before any
 * computation: tasks (a tensor, or a range of rows of a large tensor) then run in any order
 * on any thread and pwrite() their bytes in place. Memory per task is bounded by a chunk of
 * rows, never by the model size.
 *
 * Whole-tensor mode (a recipe with a transform step -- prune, factorize -- or a whole-tensor
 * encoder -- palettize). Some output shapes are known only after computing (a rank chosen by
 * energy, a structured prune) and a codebook needs the whole tensor, so the run has two
 * phases. Phase 1: one task per selected tensor loads it as float32, applies the transform
 * steps in order (one tensor may become several: W -> A, B), encodes the results with the
 * final step (or densely, in the input's float type, when there is none) into a scratch file
 * (an unnamed file beside the output: O_TMPFILE) and measures them against the original
 * tensor. Phase 2, run inside the task that completes phase 1 last: the layout is made in file
 * order, the header written and the scratch bytes copied into place (copy_file_range), the
 * tensors no step selected straight from the input. The output is byte-identical whatever the
 * task order or thread count. Peak memory per running task is a few float32/float64 copies of
 * its tensor. Until the last task has run, cz_run_output_size() is 0 and the fd holds nothing
 * meaningful.
 *
 * Steps choose tensors with "include" / "exclude" lists of fnmatch(3) patterns on the tensor
 * names (the names a previous step produced, e.g. "*.lowrank_a.weight"). Without "include",
 * each method applies its default (whole-tensor methods: float matrices that are not norms,
 * routers or embeddings; quantize: llama-quantize's rule); an "include" replaces the default
 * name rules of the whole-tensor methods and narrows quantize's.
 *
 * Use: cz_recipe_parse -> cz_run_plan -> cz_run_begin(fd) -> cz_run_task(i) for every task
 * (from any threads) -> cz_run_report -> cz_run_free. cz_run_exec does the middle with its
 * own threads for callers without a pool (the CLI).
 *
 * Ownership: a cz_run borrows the model and the recipe, which must outlive it.
 * Thread: cz_run_task, cz_run_cancel and cz_run_progress are thread-safe; the rest belong to
 * the thread that created the run.
 */
#ifndef CZ_PIPELINE_H
#define CZ_PIPELINE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "cz_err.h"
#include "cz_model.h"

#define CZ_MAX_STEPS 16   /* a recipe with more steps is refused: nothing needs that many */

typedef struct cz_recipe cz_recipe;
typedef struct cz_run cz_run;

/* Validate {"steps": [...], "output": {"format": ...}} (other top-level keys are the
 * caller's to allow: pass them in allowed_extra, NULL-terminated). Errors name the field. */
cz_err_code cz_recipe_parse(const json_t *body, const char *const *allowed_extra,
                            cz_recipe **out, cz_error *err);
void cz_recipe_free(cz_recipe *r);
/* The recipe as the server understood it, defaults filled in (new reference). */
json_t *cz_recipe_normalized(const cz_recipe *r);
/* Output format the recipe asks for, 0 if it leaves it to the input/extension. */
cz_format cz_recipe_format(const cz_recipe *r);
/* Fix the output format when the recipe left it open (CLI: from the file extension). */
void cz_recipe_set_default_format(cz_recipe *r, cz_format f);

/* Attach the job's importance matrix (borrowed: it must outlive every run planned from r). */
typedef struct cz_imatrix cz_imatrix;
void cz_recipe_set_imatrix(cz_recipe *r, const cz_imatrix *im);
/* The importance lookup the whole-tensor methods use (Wanda, activation-aware SVD, the
 * activation-weighted error of the report): E[x_j^2] of the input columns of a tensor, or
 * NULL. By default the imatrix's values of a weight when it has one per input column; this
 * replaces that (tests, other calibration sources; fn NULL goes back to the imatrix). ud is
 * borrowed like the imatrix. */
typedef const float *(*cz_importance_fn)(const void *ud, const char *name, int64_t n);
void cz_recipe_set_importance(cz_recipe *r, cz_importance_fn fn, const void *ud);

/* Plan: decide every tensor, build the output layout. input_sha256 (hex, may be NULL) and
 * the version go into the output's metadata and the report. */
cz_err_code cz_run_plan(const cz_recipe *r, const cz_model *in, const char *input_sha256,
                        cz_run **out, cz_error *err);
void cz_run_free(cz_run *run);
/* A caller that hashes the input while the run goes (the CLI) plans with this placeholder
 * (64 characters, like a real digest, so the output's header has its final size) and hands
 * the digest to cz_run_set_input_sha256 once it has it. */
#define CZ_RUN_SHA256_PENDING "0000000000000000000000000000000000000000000000000000000000000000"
/* After cz_run_exec succeeded, before cz_run_report: replace the input_sha256 given at plan
 * time (CZ_RUN_SHA256_PENDING) with hex, 64 lower-case hex digits. Where the output's header
 * carries it (safetensors' compressd.source_sha256), the header is patched in place (same
 * length) and written again at offset 0 of the fd given to cz_run_begin; the caller fsyncs
 * after. invalid_argument if the run was not planned with a digest, hex is not one, or the
 * header does not exist yet (before cz_run_begin; in whole-tensor mode before the last task);
 * on a write error the run keeps its old digest. */
cz_err_code cz_run_set_input_sha256(cz_run *run, const char *hex, cz_error *err);

size_t cz_run_n_tasks(const cz_run *run);
/* The exact size of the output file: at plan time on the direct path, after the last task in
 * whole-tensor mode (0 before). */
uint64_t cz_run_output_size(const cz_run *run);
cz_format cz_run_output_format(const cz_run *run);
/* The per-tensor plan without running anything (dry run). In whole-tensor mode sizes are
 * null (not known before computing) and each tensor lists the steps that select it. New
 * reference. */
json_t *cz_run_plan_json(const cz_run *run);

/* Direct path: write the header and padding to fd (which must be open for writing, at any
 * position). Whole-tensor mode: remember fd (open for writing) and create the scratch file
 * in fd's directory (else $TMPDIR, /var/tmp, /tmp); the last task writes everything. */
cz_err_code cz_run_begin(cz_run *run, int fd, cz_error *err);
/* Run task i (0 <= i < n_tasks). Returns CZ_E_CANCELED once cz_run_cancel was called. */
cz_err_code cz_run_task(cz_run *run, size_t i, cz_error *err);
/* Ask running and future tasks to stop at their next chunk boundary. */
void cz_run_cancel(cz_run *run);
/* Has cz_run_cancel been called? Any thread. */
bool cz_run_canceled(const cz_run *run);
void cz_run_progress(const cz_run *run, uint64_t *tensors_done, uint64_t *tensors_total,
                     uint64_t *bytes_done, uint64_t *bytes_total);
/* After every task succeeded: the quality report (new reference). seconds is the wall time
 * the caller measured. */
json_t *cz_run_report(const cz_run *run, double seconds);

/* Run every task on nthreads threads of its own; stops at the first error. */
cz_err_code cz_run_exec(cz_run *run, int nthreads, cz_error *err);

#endif
