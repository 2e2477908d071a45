/* prunert.c: the `prunert` program: a Lua 5.4 interpreter with the runtime preloaded.
 * Modelled on Lua's own lua.c: everything runs in pmain under lua_pcall, and a message handler
 * adds a traceback, so a script error is a message and exit status 1, never a crash. The
 * interactive prompt reads plain lines with fgets (no readline dependency). */
#include <cblas.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "prunert.h"
#include "threads.h"

#ifndef PRUNERT_VERSION
#define PRUNERT_VERSION "unknown"
#endif

#define PROMPT "> "
#define PROMPT2 ">> "
#define MAXINPUT 4096

static const char *progname = "prunert";
static lua_State *globalL = NULL;

/* ---- Ctrl-C: as lua.c, a hook that raises an error at the next Lua instruction ---- */

static void lstop(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    lua_sethook(L, NULL, 0, 0);
    luaL_error(L, "interrupted!");
}

static void laction(int i)
{
    int flag = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
    signal(i, SIG_DFL); /* a second Ctrl-C kills the process */
    lua_sethook(globalL, lstop, flag, 1);
}

/* ---- messages ---- */

static void print_usage(const char *badoption)
{
    if (badoption) {
        if (badoption[1] == 'e' || badoption[1] == 'l')
            fprintf(stderr, "%s: '%s' needs argument\n", progname, badoption);
        else if (strncmp(badoption, "--threads", 9) == 0)
            fprintf(stderr, "%s: '--threads' needs a positive integer\n", progname);
        else
            fprintf(stderr, "%s: unrecognized option '%s'\n", progname, badoption);
    }
    fprintf(badoption ? stderr : stdout,
            "usage: %s [options] [script [args]]\n"
            "       %s info FILE...   describe saved models (layers, sparsity, bytes per chunk)\n"
            "Available options are:\n"
            "  -e stat        execute string 'stat'\n"
            "  -i             enter interactive mode after executing 'script'\n"
            "  -l mod         require library 'mod' into global 'mod'\n"
            "  -l g=mod       require library 'mod' into global 'g'\n"
            "  -v, --version  show version information\n"
            "  -W             turn warnings on\n"
            "  --threads N    threads for OpenBLAS and prunert's kernels (also PRUNERT_THREADS)\n"
            "  -h, --help     show this help\n"
            "  --             stop handling options\n"
            "  -              stop handling options and execute stdin\n"
            "Scripts load the runtime with: local pr = require \"prunert\"\n",
            progname, progname);
}

static void l_message(const char *pname, const char *msg)
{
    if (pname)
        fprintf(stderr, "%s: ", pname);
    fprintf(stderr, "%s\n", msg);
    fflush(stderr);
}

static int report(lua_State *L, int status)
{
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        l_message(progname, msg ? msg : "(error object is not a string)");
        lua_pop(L, 1);
    }
    return status;
}

/* lua.c's docall: the library's traceback pcall, interruptible by Ctrl-C. */
static int docall(lua_State *L, int narg, int nres)
{
    globalL = L;
    signal(SIGINT, laction);
    int status = prunert_pcall(L, narg, nres);
    signal(SIGINT, SIG_DFL);
    return status;
}

static void print_version(void)
{
    printf("prunert %s (%s, %s)\n", prunert_version(), LUA_RELEASE,
           openblas_get_config());
    fflush(stdout);
}

/* ---- arguments ---- */

/* lua.c's layout: arg[0] = script, arg[1..] = its arguments, arg[-n..-1] = the interpreter
 * and the options before the script. */
static void createargtable(lua_State *L, char **argv, int argc, int script)
{
    if (script == argc)
        script = 0; /* no script: everything counts as an option */
    int narg = argc - (script + 1);
    lua_createtable(L, narg, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int dochunk(lua_State *L, int status)
{
    if (status == LUA_OK)
        status = docall(L, 0, 0);
    return report(L, status);
}

static int dostring(lua_State *L, const char *s, const char *name)
{
    return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

/* `require` mod into global g (from "g=mod" or just "mod"). */
static int dolibrary(lua_State *L, char *globname)
{
    char *modname = strchr(globname, '=');
    if (modname) {
        *modname = '\0';
        modname++;
    } else {
        modname = globname;
    }
    lua_getglobal(L, "require");
    lua_pushstring(L, modname);
    int status = docall(L, 1, 1);
    if (status == LUA_OK)
        lua_setglobal(L, globname);
    return report(L, status);
}

static int pushargs(lua_State *L)
{
    if (lua_getglobal(L, "arg") != LUA_TTABLE)
        luaL_error(L, "'arg' is not a table");
    int n = (int)luaL_len(L, -1);
    luaL_checkstack(L, n + 3, "too many arguments to script");
    int i;
    for (i = 1; i <= n; i++)
        lua_rawgeti(L, -i, i);
    lua_remove(L, -i);
    return n;
}

static int handle_script(lua_State *L, char **argv)
{
    const char *fname = argv[0];
    if (strcmp(fname, "-") == 0 && strcmp(argv[-1], "--") != 0)
        fname = NULL; /* stdin */
    int status = luaL_loadfile(L, fname);
    if (status == LUA_OK) {
        int n = pushargs(L);
        status = docall(L, n, LUA_MULTRET);
    }
    return report(L, status);
}

enum { has_error = 1, has_i = 2, has_v = 4, has_e = 8, has_h = 16 };

static int parse_threads(const char *s)
{
    char *end;
    if (!s || !*s)
        return -1;
    long n = strtol(s, &end, 10);
    return (*end == '\0' && n > 0 && n <= 1024) ? (int)n : -1;
}

/* Scans options (lua.c's collectargs plus --threads/--help/--version). *first is set to the
 * script's index, or argc when there is none, or to the bad option on error. */
static int collectargs(char **argv, int *first, int *threads)
{
    int args = 0;
    int i;
    if (argv[0] == NULL) { /* no program name at all (execve with an empty argv) */
        *first = 0;
        return 0;
    }
    for (i = 1; argv[i] != NULL; i++) {
        *first = i;
        if (argv[i][0] != '-')
            return args; /* the script */
        if (strcmp(argv[i], "--version") == 0) {
            args |= has_v;
            continue;
        }
        if (strcmp(argv[i], "--help") == 0) {
            args |= has_h;
            continue;
        }
        if (strncmp(argv[i], "--threads", 9) == 0) {
            const char *val = NULL;
            if (argv[i][9] == '=')
                val = argv[i] + 10;
            else if (argv[i][9] == '\0' && argv[i + 1] != NULL)
                val = argv[++i];
            else if (argv[i][9] != '\0')
                return has_error; /* --threadsX */
            if ((*threads = parse_threads(val)) < 0) {
                *first = val && val != argv[i] + 10 ? i - 1 : i;
                return has_error;
            }
            continue;
        }
        switch (argv[i][1]) {
        case '-': /* "--" */
            if (argv[i][2] != '\0')
                return has_error;
            *first = i + 1;
            return args;
        case '\0': /* "-": stdin as the script */
            return args;
        case 'i':
            args |= has_i; /* -i implies -v */
            /* fall through */
        case 'v':
            if (argv[i][2] != '\0')
                return has_error;
            args |= has_v;
            break;
        case 'h':
            if (argv[i][2] != '\0')
                return has_error;
            args |= has_h;
            break;
        case 'W':
            if (argv[i][2] != '\0')
                return has_error;
            break;
        case 'e':
            args |= has_e;
            /* fall through */
        case 'l':
            if (argv[i][2] == '\0') {
                i++;
                if (argv[i] == NULL || argv[i][0] == '-') {
                    *first = i - 1;
                    return has_error;
                }
            }
            break;
        default:
            return has_error;
        }
    }
    *first = i;
    return args;
}

/* Runs -e and -l (and -W) in order; returns 0 when one of them failed. */
static int runargs(lua_State *L, char **argv, int n)
{
    for (int i = 1; i < n; i++) {
        if (strncmp(argv[i], "--threads", 9) == 0) {
            if (argv[i][9] == '\0')
                i++; /* skip its value */
            continue;
        }
        if (argv[i][0] != '-' || argv[i][1] == '-')
            continue;
        int option = argv[i][1];
        switch (option) {
        case 'e':
        case 'l': {
            char *extra = argv[i] + 2;
            if (*extra == '\0')
                extra = argv[++i];
            int status = option == 'e' ? dostring(L, extra, "=(command line)")
                                       : dolibrary(L, extra);
            if (status != LUA_OK)
                return 0;
            break;
        }
        case 'W':
            lua_warning(L, "@on", 0);
            break;
        }
    }
    return 1;
}

/* ---- the interactive prompt ---- */

static int incomplete(lua_State *L, int status)
{
    if (status == LUA_ERRSYNTAX) {
        size_t lmsg;
        const char *msg = lua_tolstring(L, -1, &lmsg);
        const char *eof = "<eof>";
        size_t leof = strlen(eof);
        if (lmsg >= leof && strcmp(msg + lmsg - leof, eof) == 0) {
            lua_pop(L, 1);
            return 1;
        }
    }
    return 0;
}

/* Reads one line into a Lua string on the stack; 0 at end of input. */
static int pushline(lua_State *L, int firstline)
{
    char buf[MAXINPUT];
    fputs(firstline ? PROMPT : PROMPT2, stdout);
    fflush(stdout);
    if (fgets(buf, sizeof buf, stdin) == NULL)
        return 0;
    size_t l = strlen(buf);
    if (l > 0 && buf[l - 1] == '\n')
        buf[--l] = '\0';
    if (firstline && buf[0] == '=')
        lua_pushfstring(L, "return %s", buf + 1); /* Lua 5.2's '=expr' habit still works */
    else
        lua_pushlstring(L, buf, l);
    return 1;
}

/* First try the line as an expression ("return " .. line), so `2+3` prints 5. */
static int addreturn(lua_State *L)
{
    const char *line = lua_tostring(L, -1);
    const char *retline = lua_pushfstring(L, "return %s;", line);
    int status = luaL_loadbuffer(L, retline, strlen(retline), "=stdin");
    if (status == LUA_OK)
        lua_remove(L, -2);
    else
        lua_pop(L, 2);
    return status;
}

/* Otherwise a statement, reading more lines while it is incomplete. */
static int multiline(lua_State *L)
{
    for (;;) {
        size_t len;
        const char *line = lua_tolstring(L, 1, &len);
        int status = luaL_loadbuffer(L, line, len, "=stdin");
        if (!incomplete(L, status) || !pushline(L, 0))
            return status;
        lua_pushliteral(L, "\n");
        lua_insert(L, -2);
        lua_concat(L, 3);
    }
}

static int loadline(lua_State *L)
{
    lua_settop(L, 0);
    if (!pushline(L, 1))
        return -1;
    int status = addreturn(L);
    if (status != LUA_OK)
        status = multiline(L);
    lua_remove(L, 1);
    return status;
}

static void l_print(lua_State *L)
{
    int n = lua_gettop(L);
    if (n > 0) {
        luaL_checkstack(L, LUA_MINSTACK, "too many results to print");
        lua_getglobal(L, "print");
        lua_insert(L, 1);
        if (lua_pcall(L, n, 0, 0) != LUA_OK)
            l_message(progname, lua_pushfstring(L, "error calling 'print' (%s)",
                                                lua_tostring(L, -1)));
    }
}

static void doREPL(lua_State *L)
{
    const char *oldprogname = progname;
    progname = NULL; /* lua.c's habit: no program name before errors at the prompt */
    int status;
    while ((status = loadline(L)) != -1) {
        if (status == LUA_OK)
            status = docall(L, 0, LUA_MULTRET);
        if (status == LUA_OK)
            l_print(L);
        else
            report(L, status);
    }
    lua_settop(L, 0);
    fputs("\n", stdout);
    fflush(stdout);
    progname = oldprogname;
}

/* ---- main ---- */

/* `prunert info FILE...`: what a model file holds (lua/prunert/model.lua's info). */
static int handle_info(lua_State *L, char **argv, int argc, int first)
{
    static const char code[] =
        "local text, err = require('prunert.model').info(...)\n"
        "if not text then return err end\n"
        "io.write(text, '\\n')\n";
    if (first >= argc) {
        l_message(progname, "usage: prunert info FILE...");
        return LUA_ERRRUN;
    }
    for (int i = first; i < argc; i++) {
        int status = luaL_loadbuffer(L, code, sizeof code - 1, "=info");
        if (status == LUA_OK) {
            lua_pushstring(L, argv[i]);
            status = docall(L, 1, 1);
        }
        if (report(L, status) != LUA_OK)
            return status;
        if (lua_isstring(L, -1)) { /* an expected failure (missing or damaged file): no traceback */
            l_message(progname, lua_tostring(L, -1));
            return LUA_ERRRUN;
        }
        lua_pop(L, 1);
    }
    return LUA_OK;
}

static int pmain(lua_State *L)
{
    int argc = (int)lua_tointeger(L, 1);
    char **argv = (char **)lua_touserdata(L, 2);
    int script, threads = 0;
    int args = collectargs(argv, &script, &threads);
    luaL_checkversion(L);
    if (args == has_error) {
        print_usage(argv[script]);
        return 0;
    }
    if (args & has_h) {
        print_usage(NULL);
        lua_pushboolean(L, 1);
        return 1;
    }
    if (args & has_v)
        print_version();

    /* One knob for OpenBLAS and the runtime: the option wins over the environment. */
    const char *env = getenv("PRUNERT_THREADS");
    if (threads == 0 && env && *env) {
        threads = parse_threads(env);
        if (threads < 0) {
            l_message(progname, "PRUNERT_THREADS must be a positive integer");
            return 0;
        }
    }
    if (threads > 0)
        pr_set_threads(threads);

    luaL_openlibs(L);
    if (prunert_openlibs(L) != PRUNERT_OK) {
        /* Not fatal: the script may not need the library, and `require "prunert"` will then
         * fail with Lua's own list of the paths it tried. */
    }
    createargtable(L, argv, argc, script);
    lua_gc(L, LUA_GCRESTART);
    lua_gc(L, LUA_GCGEN, 0, 0);
    if (!runargs(L, argv, script))
        return 0;
    if (script < argc && strcmp(argv[script], "info") == 0) {
        if (handle_info(L, argv, argc, script + 1) != LUA_OK)
            return 0;
        lua_pushboolean(L, 1);
        return 1;
    }
    if (script < argc && handle_script(L, argv + script) != LUA_OK)
        return 0;
    if (args & has_i) {
        doREPL(L);
    } else if (script == argc && !(args & (has_e | has_v))) {
        if (isatty(0)) {
            print_version();
            doREPL(L);
        } else {
            dochunk(L, luaL_loadfile(L, NULL)); /* stdin as a file */
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

int main(int argc, char **argv)
{
    lua_State *L = luaL_newstate();
    if (L == NULL) {
        l_message(argv[0], "cannot create state: not enough memory");
        return EXIT_FAILURE;
    }
    lua_gc(L, LUA_GCSTOP); /* stop GC while building the state, as lua.c */
    lua_pushcfunction(L, pmain);
    lua_pushinteger(L, argc);
    lua_pushlightuserdata(L, argv);
    int status = lua_pcall(L, 2, 1, 0);
    int result = lua_toboolean(L, -1);
    report(L, status);
    lua_close(L);
    return (result && status == LUA_OK) ? EXIT_SUCCESS : EXIT_FAILURE;
}
