/* cz_token: the `compressd token` subcommand (create, list, revoke API tokens). */
#ifndef CZ_TOKEN_H
#define CZ_TOKEN_H

/* argv holds the arguments after "token"; returns the exit status. */
int cz_token_main(int argc, char **argv);

#endif
