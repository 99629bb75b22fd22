/*
 * kiln launcher: the ENTRYPOINT of images kiln builds (/cnb/lifecycle/launcher and the
 * /cnb/process/<type> symlinks to it). It follows the launcher rules of Platform API 0.15 and
 * Buildpack API 0.12 (see README.md in this folder): choose the process, build the environment
 * from the buildpacks' launch layers on top of the container's, run exec.d programs, change to the
 * working directory and execve the command. No shell and no interpreter is needed in the image,
 * except for `direct = false` processes of Buildpack API < 0.9, which run through /bin/bash (else
 * /bin/sh) as the spec says; the only input besides the layers is <layers>/config/kiln-launch,
 * written by the exporter.
 *
 * Any failure before execve exits with 82 and one line on stderr.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define LAUNCH_ERROR 82
#define FILE_MAGIC "kiln-launch 2"

extern char **environ;

/* ---------- failure ---------- */

static void die(const char *fmt, ...) {
	va_list ap;
	fputs("kiln-launcher: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(LAUNCH_ERROR);
}

static void *xmalloc(size_t n) {
	void *p = malloc(n ? n : 1);
	if (!p) die("out of memory");
	return p;
}

static void *xrealloc(void *p, size_t n) {
	p = realloc(p, n ? n : 1);
	if (!p) die("out of memory");
	return p;
}

static char *xstrdup(const char *s) {
	size_t n = strlen(s) + 1;
	char *p = xmalloc(n);
	memcpy(p, s, n);
	return p;
}

static char *join3(const char *a, const char *b, const char *c) {
	size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
	char *p = xmalloc(la + lb + lc + 1);
	memcpy(p, a, la);
	memcpy(p + la, b, lb);
	memcpy(p + la + lb, c, lc + 1);
	return p;
}

static char *path_join(const char *dir, const char *name) { return join3(dir, "/", name); }

/* ---------- string vectors ---------- */

struct vec {
	char **v;
	size_t n, cap;
};

static void vec_push(struct vec *s, char *x) {
	if (s->n + 2 > s->cap) {
		s->cap = s->cap ? s->cap * 2 : 16;
		s->v = xrealloc(s->v, s->cap * sizeof(char *));
	}
	s->v[s->n++] = x;
	s->v[s->n] = NULL;
}

/* ---------- environment (a NAME=VALUE vector we own) ---------- */

static struct vec env;

static long env_find(const char *name) {
	size_t ln = strlen(name);
	for (size_t i = 0; i < env.n; i++)
		if (strncmp(env.v[i], name, ln) == 0 && env.v[i][ln] == '=') return (long)i;
	return -1;
}

static const char *env_get(const char *name) {
	long i = env_find(name);
	return i < 0 ? "" : env.v[i] + strlen(name) + 1;
}

static void env_set(const char *name, const char *value) {
	char *kv = join3(name, "=", value);
	long i = env_find(name);
	if (i < 0)
		vec_push(&env, kv);
	else
		env.v[i] = kv;
}

static void env_unset(const char *name) {
	long i = env_find(name);
	if (i < 0) return;
	for (size_t j = (size_t)i; j + 1 < env.n; j++) env.v[j] = env.v[j + 1];
	env.n--;
	env.v[env.n] = NULL;
}

/* Container env minus the platform's own variables, with /cnb dirs removed from PATH. */
static void env_init(void) {
	static const char *excluded[] = {"CNB_LAYERS_DIR", "CNB_APP_DIR", "CNB_PROCESS_TYPE", "CNB_PLATFORM_API",
	                                 "CNB_DEPRECATION_MODE", NULL};
	for (char **e = environ; *e; e++) vec_push(&env, xstrdup(*e));
	for (const char **x = excluded; *x; x++) env_unset(*x);
	if (env_find("PATH") >= 0) {
		char *path = xstrdup(env_get("PATH"));
		size_t cap = strlen(path) + 1, len = 0;
		char *out = xmalloc(cap);
		out[0] = '\0';
		/* strtok would skip empty entries, which are meaningful in PATH; split by hand. */
		char *p = path;
		int first = 1;
		for (;;) {
			char *colon = strchr(p, ':');
			if (colon) *colon = '\0';
			if (strcmp(p, "/cnb/process") != 0 && strcmp(p, "/cnb/lifecycle") != 0) {
				if (!first) out[len++] = ':';
				size_t lp = strlen(p);
				memcpy(out + len, p, lp);
				len += lp;
				out[len] = '\0';
				first = 0;
			}
			if (!colon) break;
			p = colon + 1;
		}
		env_set("PATH", out);
	}
}

/* ---------- files and directories ---------- */

static int is_dir(const char *path) {
	struct stat st;
	return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Whole file as a NUL-terminated string (values are raw: no trimming). NULL if it does not exist. */
static char *read_file(const char *path, size_t *len_out) {
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) return NULL;
		die("read %s: %s", path, strerror(errno));
	}
	size_t cap = 4096, len = 0;
	char *buf = xmalloc(cap);
	for (;;) {
		if (len + 1 >= cap) buf = xrealloc(buf, cap *= 2);
		ssize_t r = read(fd, buf + len, cap - len - 1);
		if (r < 0) {
			if (errno == EINTR) continue;
			die("read %s: %s", path, strerror(errno));
		}
		if (r == 0) break;
		len += (size_t)r;
	}
	close(fd);
	buf[len] = '\0';
	if (len_out) *len_out = len;
	return buf;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

enum entry_kind { WANT_DIRS, WANT_FILES };

/* Sorted names in dir (byte order, like Go's os.ReadDir), directories or non-directories only. */
static struct vec list_dir(const char *dir, enum entry_kind kind) {
	struct vec out = {0};
	DIR *d = opendir(dir);
	if (!d) {
		if (errno == ENOENT || errno == ENOTDIR) return out;
		die("list %s: %s", dir, strerror(errno));
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
		char *full = path_join(dir, e->d_name);
		struct stat st;
		int dirlike;
		if (kind == WANT_DIRS) {
			/* Layer directories: real directories only (a symlink entry is not a layer). */
			dirlike = lstat(full, &st) == 0 && S_ISDIR(st.st_mode);
		} else {
			/* Files: anything that is not a directory, following symlinks. */
			dirlike = stat(full, &st) == 0 && S_ISDIR(st.st_mode);
		}
		free(full);
		if ((kind == WANT_DIRS) == (dirlike != 0)) vec_push(&out, xstrdup(e->d_name));
	}
	closedir(d);
	if (out.n > 1) qsort(out.v, out.n, sizeof(char *), cmp_names);
	return out;
}

/* ---------- the launch file written by the exporter ---------- */

struct process {
	const char *type;
	const char *working_dir; /* "" = app dir */
	int append_args;          /* buildpack API < 0.9: user args are appended, not replacing */
	int shell;                /* direct = false (buildpack API < 0.9): run through a shell */
	const char *exec_env;     /* comma-separated; "" = every execution environment */
	struct vec command, args;
};

struct buildpack {
	const char *id, *api;
};

static struct process *procs;
static size_t nprocs;
static struct buildpack *bps;
static size_t nbps;
static const char *default_type = "";

struct cursor {
	const char *p, *end;
	const char *path;
};

static const char *next_field(struct cursor *c) {
	if (c->p >= c->end) die("read %s: truncated record", c->path);
	const char *f = c->p;
	const char *nul = memchr(c->p, '\0', (size_t)(c->end - c->p));
	if (!nul) die("read %s: field without NUL terminator", c->path);
	c->p = nul + 1;
	return f;
}

static size_t next_count(struct cursor *c) {
	const char *f = next_field(c);
	char *endp;
	unsigned long n = strtoul(f, &endp, 10);
	if (*f == '\0' || *endp != '\0' || n > 100000) die("read %s: bad count \"%s\"", c->path, f);
	return (size_t)n;
}

static void load_launch_file(const char *layers_dir) {
	char *path = path_join(layers_dir, "config/kiln-launch");
	size_t len;
	char *data = read_file(path, &len);
	if (!data) return; /* no processes: only `launcher -- cmd` style launches work */
	struct cursor c = {data, data + len, path};
	if (strcmp(next_field(&c), FILE_MAGIC) != 0) die("read %s: not a \"%s\" file", path, FILE_MAGIC);
	while (c.p < c.end) {
		const char *tag = next_field(&c);
		if (strcmp(tag, "bp") == 0) {
			bps = xrealloc(bps, (nbps + 1) * sizeof *bps);
			bps[nbps].id = next_field(&c);
			bps[nbps].api = next_field(&c);
			nbps++;
		} else if (strcmp(tag, "default") == 0) {
			default_type = next_field(&c);
		} else if (strcmp(tag, "proc") == 0) {
			procs = xrealloc(procs, (nprocs + 1) * sizeof *procs);
			struct process *p = &procs[nprocs++];
			memset(p, 0, sizeof *p);
			p->type = next_field(&c);
			p->working_dir = next_field(&c);
			const char *mode = next_field(&c);
			if (strcmp(mode, "append") == 0)
				p->append_args = 1;
			else if (strcmp(mode, "replace") != 0)
				die("read %s: bad args mode \"%s\"", path, mode);
			const char *how = next_field(&c);
			if (strcmp(how, "shell") == 0)
				p->shell = 1;
			else if (strcmp(how, "direct") != 0)
				die("read %s: bad launch mode \"%s\"", path, how);
			p->exec_env = next_field(&c);
			for (size_t n = next_count(&c); n > 0; n--) vec_push(&p->command, (char *)next_field(&c));
			for (size_t n = next_count(&c); n > 0; n--) vec_push(&p->args, (char *)next_field(&c));
			if (p->command.n == 0) die("read %s: process \"%s\" has no command", path, p->type);
		} else {
			die("read %s: unknown record \"%s\"", path, tag);
		}
	}
}

static int exec_env_eligible(const struct process *p, const char *exec_env) {
	if (p->exec_env[0] == '\0') return 1;
	const char *s = p->exec_env;
	size_t le = strlen(exec_env);
	while (*s) {
		const char *comma = strchr(s, ',');
		size_t l = comma ? (size_t)(comma - s) : strlen(s);
		if ((l == 1 && s[0] == '*') || (l == le && strncmp(s, exec_env, l) == 0)) return 1;
		s += l;
		if (*s == ',') s++;
	}
	return 0;
}

static struct process *find_process(const char *type, const char *exec_env) {
	for (size_t i = 0; i < nprocs; i++)
		if (strcmp(procs[i].type, type) == 0 && exec_env_eligible(&procs[i], exec_env)) return &procs[i];
	return NULL;
}

/* ---------- env files ---------- */

static char *escape_id(const char *id) {
	char *s = xstrdup(id);
	for (char *p = s; *p; p++)
		if (*p == '/') *p = '_';
	return s;
}

/* <layers>/<escaped id>: where a buildpack's layers are (the caller frees it). */
static char *buildpack_dir(const char *layers_dir, const char *id) {
	char *esc = escape_id(id);
	char *dir = path_join(layers_dir, esc);
	free(esc);
	return dir;
}

/* Prepends <layer>/bin to PATH and <layer>/lib to LD_LIBRARY_PATH when they exist. */
static void add_root_dir(const char *layer) {
	static const char *map[][2] = {{"bin", "PATH"}, {"lib", "LD_LIBRARY_PATH"}};
	for (size_t i = 0; i < 2; i++) {
		char *sub = path_join(layer, map[i][0]);
		if (is_dir(sub)) {
			const char *old = env_get(map[i][1]);
			char *v = old[0] ? join3(sub, ":", old) : xstrdup(sub);
			env_set(map[i][1], v);
		}
		free(sub);
	}
}

/* Applies the env files of one directory: NAME[.override|.default|.prepend|.append], .delim. */
static void add_env_dir(const char *dir) {
	struct vec files = list_dir(dir, WANT_FILES);
	for (size_t i = 0; i < files.n; i++) {
		const char *fname = files.v[i];
		const char *dot = strchr(fname, '.');
		char *name = dot ? strndup(fname, (size_t)(dot - fname)) : xstrdup(fname);
		const char *action = dot ? dot + 1 : "override";
		char *full = path_join(dir, fname);
		char *value = read_file(full, NULL);
		if (!value) value = xstrdup("");
		if (strcmp(action, "override") == 0) {
			env_set(name, value);
		} else if (strcmp(action, "default") == 0) {
			if (env_get(name)[0] == '\0') env_set(name, value);
		} else if (strcmp(action, "prepend") == 0 || strcmp(action, "append") == 0) {
			/* No .delim file means no separator at all (not ':'). */
			char *dpath = join3(dir, "/", name);
			char *dfile = join3(dpath, ".delim", "");
			char *delim = read_file(dfile, NULL);
			if (!delim) delim = xstrdup("");
			const char *old = env_get(name);
			char *v;
			if (old[0] == '\0')
				v = xstrdup(value);
			else if (action[0] == 'p')
				v = join3(value, delim, old);
			else
				v = join3(old, delim, value);
			env_set(name, v);
			free(dpath);
			free(dfile);
			free(delim);
		}
		/* .delim and unknown suffixes are not actions. */
		free(full);
		free(name);
	}
}

/* ---------- exec.d ---------- */

/* Minimal TOML for exec.d output: a flat table of `key = string` pairs and comments. */
struct toml {
	const char *p, *src;
	const char *path;
};

static void toml_fail(struct toml *t, const char *what) {
	int line = 1;
	for (const char *q = t->src; q < t->p; q++)
		if (*q == '\n') line++;
	die("exec.d %s: output line %d: %s", t->path, line, what);
}

static void put_utf8(char *out, size_t *len, unsigned long cp) {
	char *o = out + *len;
	if (cp < 0x80) {
		o[0] = (char)cp;
		*len += 1;
	} else if (cp < 0x800) {
		o[0] = (char)(0xC0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3F));
		*len += 2;
	} else if (cp < 0x10000) {
		o[0] = (char)(0xE0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[2] = (char)(0x80 | (cp & 0x3F));
		*len += 3;
	} else {
		o[0] = (char)(0xF0 | (cp >> 18));
		o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
		o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
		o[3] = (char)(0x80 | (cp & 0x3F));
		*len += 4;
	}
}

static void skip_ws(struct toml *t) {
	while (*t->p == ' ' || *t->p == '\t') t->p++;
}

/* Parses a basic ("...") or literal ('...') string, single- or multi-line. */
static char *toml_string(struct toml *t) {
	char q = *t->p;
	int multi = t->p[1] == q && t->p[2] == q;
	t->p += multi ? 3 : 1;
	if (multi && *t->p == '\n') t->p++;
	else if (multi && t->p[0] == '\r' && t->p[1] == '\n') t->p += 2;
	size_t cap = strlen(t->p) + 1, len = 0;
	char *out = xmalloc(cap);
	for (;;) {
		char ch = *t->p;
		if (ch == '\0') toml_fail(t, "unterminated string");
		if (!multi && ch == '\n') toml_fail(t, "newline in a single-line string");
		if (ch == q && (!multi || (t->p[1] == q && t->p[2] == q))) {
			t->p += multi ? 3 : 1;
			/* Up to two extra quotes may end a multi-line string ("""a"""" is a" ). */
			while (multi && *t->p == q && len < cap) {
				out[len++] = q;
				t->p++;
			}
			break;
		}
		if (q == '"' && ch == '\\') {
			char e = t->p[1];
			t->p += 2;
			switch (e) {
			case 'b': out[len++] = '\b'; break;
			case 't': out[len++] = '\t'; break;
			case 'n': out[len++] = '\n'; break;
			case 'f': out[len++] = '\f'; break;
			case 'r': out[len++] = '\r'; break;
			case 'e': out[len++] = 0x1b; break;
			case '"': out[len++] = '"'; break;
			case '\\': out[len++] = '\\'; break;
			case 'u':
			case 'U': {
				int digits = e == 'u' ? 4 : 8;
				unsigned long cp = 0;
				for (int i = 0; i < digits; i++) {
					char h = t->p[i];
					int v = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : h >= 'A' && h <= 'F' ? h - 'A' + 10 : -1;
					if (v < 0) toml_fail(t, "bad unicode escape");
					cp = cp * 16 + (unsigned long)v;
				}
				if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) toml_fail(t, "bad unicode scalar");
				t->p += digits;
				put_utf8(out, &len, cp);
				break;
			}
			default:
				if (multi && (e == '\n' || e == ' ' || e == '\t' || e == '\r')) {
					/* Line-ending backslash: trim whitespace and newlines up to the next character. */
					t->p--;
					while (*t->p == ' ' || *t->p == '\t' || *t->p == '\n' || *t->p == '\r') t->p++;
					break;
				}
				toml_fail(t, "bad escape sequence");
			}
			continue;
		}
		out[len++] = ch;
		t->p++;
	}
	out[len] = '\0';
	return out;
}

static char *toml_key(struct toml *t) {
	if (*t->p == '"' || *t->p == '\'') {
		if (t->p[1] == *t->p && t->p[2] == *t->p) toml_fail(t, "multi-line strings are not keys");
		return toml_string(t);
	}
	const char *s = t->p;
	while ((*t->p >= 'A' && *t->p <= 'Z') || (*t->p >= 'a' && *t->p <= 'z') || (*t->p >= '0' && *t->p <= '9') ||
	       *t->p == '_' || *t->p == '-')
		t->p++;
	if (t->p == s) toml_fail(t, "expected a key");
	return strndup(s, (size_t)(t->p - s));
}

static void apply_execd_toml(const char *src, const char *path) {
	struct toml t = {src, src, path};
	for (;;) {
		while (*t.p == ' ' || *t.p == '\t' || *t.p == '\n' || *t.p == '\r') t.p++;
		if (*t.p == '\0') return;
		if (*t.p == '#') {
			while (*t.p && *t.p != '\n') t.p++;
			continue;
		}
		if (*t.p == '[') toml_fail(&t, "tables are not allowed: expected KEY = \"value\"");
		char *key = toml_key(&t);
		skip_ws(&t);
		if (*t.p == '.') toml_fail(&t, "dotted keys are not allowed");
		if (*t.p != '=') toml_fail(&t, "expected '='");
		t.p++;
		skip_ws(&t);
		if (*t.p != '"' && *t.p != '\'') toml_fail(&t, "value must be a string");
		char *value = toml_string(&t);
		skip_ws(&t);
		if (*t.p == '#')
			while (*t.p && *t.p != '\n') t.p++;
		if (*t.p == '\r') t.p++;
		if (*t.p != '\n' && *t.p != '\0') toml_fail(&t, "expected end of line after the value");
		if (key[0] == '\0' || strchr(key, '=')) toml_fail(&t, "invalid variable name");
		env_set(key, value);
		free(key);
		free(value);
	}
}

/* Runs one exec.d program with fd 3 as its output pipe and the current env; applies its TOML. */
static void run_execd(const char *path) {
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0) die("exec.d %s: pipe: %s", path, strerror(errno));
	pid_t pid = fork();
	if (pid < 0) die("exec.d %s: fork: %s", path, strerror(errno));
	if (pid == 0) {
		close(fds[0]);
		if (fds[1] != 3) {
			if (dup2(fds[1], 3) < 0) _exit(127);
		} else {
			fcntl(3, F_SETFD, 0);
		}
		char *argv[] = {(char *)path, NULL};
		execve(path, argv, env.v);
		fprintf(stderr, "kiln-launcher: exec.d %s: %s\n", path, strerror(errno));
		_exit(127);
	}
	close(fds[1]);
	size_t cap = 4096, len = 0;
	char *buf = xmalloc(cap);
	for (;;) {
		if (len + 1 >= cap) buf = xrealloc(buf, cap *= 2);
		ssize_t r = read(fds[0], buf + len, cap - len - 1);
		if (r < 0) {
			if (errno == EINTR) continue;
			die("exec.d %s: read output: %s", path, strerror(errno));
		}
		if (r == 0) break;
		len += (size_t)r;
	}
	buf[len] = '\0';
	close(fds[0]);
	int status;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) die("exec.d %s: wait: %s", path, strerror(errno));
	if (WIFSIGNALED(status)) die("exec.d %s: killed by signal %d", path, WTERMSIG(status));
	if (WEXITSTATUS(status) != 0) die("exec.d %s: exited with status %d", path, WEXITSTATUS(status));
	if (memchr(buf, '\0', len)) die("exec.d %s: output contains a NUL byte", path);
	apply_execd_toml(buf, path);
	free(buf);
}

static void run_execd_dir(const char *dir) {
	struct vec files = list_dir(dir, WANT_FILES);
	for (size_t i = 0; i < files.n; i++) {
		char *full = path_join(dir, files.v[i]);
		run_execd(full);
		free(full);
	}
}

/* ---------- exec ---------- */

static char *look_path(const char *cmd) {
	if (strchr(cmd, '/')) return xstrdup(cmd);
	const char *path = env_get("PATH");
	const char *s = path;
	for (;;) {
		const char *colon = strchr(s, ':');
		size_t l = colon ? (size_t)(colon - s) : strlen(s);
		char *dir = l ? strndup(s, l) : xstrdup(".");
		char *full = path_join(dir, cmd);
		free(dir);
		struct stat st;
		if (stat(full, &st) == 0 && S_ISREG(st.st_mode) && access(full, X_OK) == 0) return full;
		free(full);
		if (!colon) break;
		s = colon + 1;
	}
	die("path lookup: executable \"%s\" not found in PATH=%s", cmd, path);
	return NULL;
}

/* Single-quotes s for bash. */
static char *shell_quote(const char *s) {
	size_t n = 2;
	for (const char *p = s; *p; p++) n += *p == '\'' ? 4 : 1;
	char *o = xmalloc(n + 1), *w = o;
	*w++ = '\'';
	for (const char *p = s; *p; p++) {
		if (*p == '\'') {
			memcpy(w, "'\\''", 4);
			w += 4;
		} else {
			*w++ = *p;
		}
	}
	*w++ = '\'';
	*w = '\0';
	return o;
}

int main(int argc, char **argv) {
	const char *self = argv[0];
	const char *layers_dir = getenv("CNB_LAYERS_DIR");
	const char *app_dir = getenv("CNB_APP_DIR");
	const char *exec_env = getenv("CNB_EXEC_ENV");
	const char *ptype_env = getenv("CNB_PROCESS_TYPE");
	if (!layers_dir || !*layers_dir) layers_dir = "/layers";
	if (!app_dir || !*app_dir) app_dir = "/workspace";
	if (!exec_env || !*exec_env) exec_env = "production";
	layers_dir = xstrdup(layers_dir);
	app_dir = xstrdup(app_dir);
	exec_env = xstrdup(exec_env);

	if (ptype_env && *ptype_env) {
		/* Platform API >= 0.4: the process comes from the entrypoint, never from this variable. */
		fprintf(stderr, "kiln-launcher: warning: CNB_PROCESS_TYPE is not supported; it is ignored\n");
		fprintf(stderr, "kiln-launcher: warning: run with ENTRYPOINT '/cnb/process/%s' to invoke the '%s' process type\n",
		        ptype_env, ptype_env);
	}

	load_launch_file(layers_dir);

	/* Process selection: argv[0]'s basename when it names an eligible process type. */
	const char *base = strrchr(self, '/');
	base = base ? base + 1 : self;
	struct process *proc = find_process(base, exec_env);
	if (!proc && strncmp(self, "/cnb/process/", 13) == 0)
		die("determine start command: process type \"%s\" was not found", base);
	/* Without a selected type and without a command, fall back to the default process. */
	if (!proc && argc <= 1 && default_type[0]) {
		proc = find_process(default_type, exec_env);
		if (!proc) die("determine start command: default process type \"%s\" was not found", default_type);
	}

	struct vec cmd = {0}, args = {0};
	const char *ptype = "";
	int direct = 1, proc_shell = 0;
	const char *wd = app_dir;
	if (proc) {
		ptype = proc->type;
		if (proc->working_dir[0]) wd = proc->working_dir;
		direct = !proc->shell;
		proc_shell = proc->shell;
		vec_push(&cmd, proc->command.v[0]);
		int user = argc > 1;
		if (proc->command.n > 1) {
			/* Extra command entries always stay; user args replace the overridable args. */
			for (size_t i = 1; i < proc->command.n; i++) vec_push(&args, proc->command.v[i]);
			if (user)
				for (int i = 1; i < argc; i++) vec_push(&args, argv[i]);
			else
				for (size_t i = 0; i < proc->args.n; i++) vec_push(&args, proc->args.v[i]);
		} else if (!user) {
			for (size_t i = 0; i < proc->args.n; i++) vec_push(&args, proc->args.v[i]);
		} else {
			if (proc->append_args)
				for (size_t i = 0; i < proc->args.n; i++) vec_push(&args, proc->args.v[i]);
			for (int i = 1; i < argc; i++) vec_push(&args, argv[i]);
		}
	} else {
		if (argc <= 1) die("determine start command: when there is no default process a command is required");
		if (argc > 2 && strcmp(argv[1], "--") == 0) {
			vec_push(&cmd, argv[2]);
			for (int i = 3; i < argc; i++) vec_push(&args, argv[i]);
		} else {
			/* `launcher cmd args`: evaluated by bash where the image has one, else run directly. */
			direct = access("/bin/bash", X_OK) != 0;
			vec_push(&cmd, argv[1]);
			for (int i = 2; i < argc; i++) vec_push(&args, argv[i]);
		}
	}

	env_init();
	if (chdir(app_dir) != 0) die("change to app directory %s: %s", app_dir, strerror(errno));

	/* Environment: per buildpack, first every layer's bin/lib, then every layer's env files. */
	struct vec profiles = {0};
	for (size_t b = 0; b < nbps; b++) {
		char *bpdir = buildpack_dir(layers_dir, bps[b].id);
		struct vec layers = list_dir(bpdir, WANT_DIRS);
		for (size_t l = 0; l < layers.n; l++) {
			char *ld = path_join(bpdir, layers.v[l]);
			add_root_dir(ld);
			free(ld);
		}
		for (size_t l = 0; l < layers.n; l++) {
			char *ld = path_join(bpdir, layers.v[l]);
			char *d1 = path_join(ld, "env"), *d2 = path_join(ld, "env.launch");
			add_env_dir(d1);
			add_env_dir(d2);
			if (ptype[0]) {
				char *d3 = path_join(d2, ptype);
				add_env_dir(d3);
				free(d3);
			}
			if (!direct) {
				/* Shell mode sources the files of profile.d, then of profile.d/<type>, of every layer. */
				char *pd = path_join(ld, "profile.d");
				struct vec pf = list_dir(pd, WANT_FILES);
				for (size_t i = 0; i < pf.n; i++) vec_push(&profiles, path_join(pd, pf.v[i]));
				if (ptype[0]) {
					char *pdt = path_join(pd, ptype);
					struct vec pt = list_dir(pdt, WANT_FILES);
					for (size_t i = 0; i < pt.n; i++) vec_push(&profiles, path_join(pdt, pt.v[i]));
					free(pdt);
				}
				free(pd);
			}
			free(d1);
			free(d2);
			free(ld);
		}
		free(bpdir);
	}

	/* exec.d: per buildpack and layer, the files of exec.d, then of exec.d/<type>; output overrides env. */
	for (size_t b = 0; b < nbps; b++) {
		char *bpdir = buildpack_dir(layers_dir, bps[b].id);
		struct vec layers = list_dir(bpdir, WANT_DIRS);
		for (size_t l = 0; l < layers.n; l++) {
			char *ed = join3(bpdir, "/", layers.v[l]);
			char *ex = path_join(ed, "exec.d");
			run_execd_dir(ex);
			if (ptype[0]) {
				char *ext = path_join(ex, ptype);
				run_execd_dir(ext);
				free(ext);
			}
			free(ex);
			free(ed);
		}
		free(bpdir);
	}

	if (!direct) {
		/* Shell mode: source profile scripts and <app>/.profile, cd, then exec the evaluated tokens. */
		size_t cap = 256;
		char *script = xmalloc(cap);
		script[0] = '\0';
#define APPEND(s)                                                                                                    \
	do {                                                                                                             \
		const char *s_ = (s);                                                                                        \
		size_t need = strlen(script) + strlen(s_) + 1;                                                               \
		if (need > cap) script = xrealloc(script, cap = need * 2);                                                   \
		strcat(script, s_);                                                                                          \
	} while (0)
		/* `.` rather than bash's `source`: a direct = false process may get a POSIX sh. */
		const char *sh = access("/bin/bash", X_OK) == 0 ? "/bin/bash" : "/bin/sh";
		if (proc_shell && access(sh, X_OK) != 0)
			die("process \"%s\" has direct = false and needs a shell (/bin/bash or /bin/sh), which this image does not "
			    "have: build it with a run image that has one (kiln build --run-image shell)",
			    ptype);
		for (size_t i = 0; i < profiles.n; i++) {
			APPEND(". ");
			APPEND(shell_quote(profiles.v[i]));
			APPEND("\n");
		}
		char *appprof = path_join(app_dir, ".profile");
		if (access(appprof, R_OK) == 0) {
			APPEND(". ");
			APPEND(shell_quote(appprof));
			APPEND("\n");
		}
		APPEND("cd ");
		APPEND(shell_quote(wd));
		APPEND(" || exit 82\nexec");
		if (proc_shell) {
			/*
			 * A direct = false process, as the reference launcher runs it: the command and args
			 * are this script's positional parameters. Without args the command is itself a
			 * script for a nested shell (`bundle exec rackup -p $PORT`); with args each token is
			 * shell-evaluated on its own (`"$(eval echo \"$0\")" ...`) and the result exec'd.
			 */
			APPEND(" ");
			APPEND(shell_quote(sh));
			if (args.n == 0) {
				APPEND(" -c \"$@\"");
			} else {
				APPEND(" -c '\"$(eval echo \\\"$0\\\")\"");
				char tok[64];
				for (size_t i = 1; i <= args.n; i++) {
					snprintf(tok, sizeof tok, " \"$(eval echo \\\"${%zu}\\\")\"", i);
					APPEND(tok);
				}
				APPEND("' \"$@\"");
			}
			struct vec sargv = {0};
			vec_push(&sargv, (char *)(strrchr(sh, '/') + 1));
			vec_push(&sargv, "-c");
			vec_push(&sargv, script);
			vec_push(&sargv, (char *)self);
			vec_push(&sargv, cmd.v[0]);
			for (size_t i = 0; i < args.n; i++) vec_push(&sargv, args.v[i]);
			execve(sh, sargv.v, env.v);
			die("exec %s: %s", sh, strerror(errno));
		}
		/* Tokens are shell-evaluated, as the spec's shell mode says. */
		APPEND(" ");
		APPEND(cmd.v[0]);
		for (size_t i = 0; i < args.n; i++) {
			APPEND(" ");
			APPEND(args.v[i]);
		}
		char *bargv[] = {"bash", "-c", script, (char *)self, NULL};
		execve("/bin/bash", bargv, env.v);
		die("exec /bin/bash: %s", strerror(errno));
	}

	char *binary = look_path(cmd.v[0]);
	if (chdir(wd) != 0) die("change to working directory %s: %s", wd, strerror(errno));
	struct vec full = {0};
	vec_push(&full, cmd.v[0]);
	for (size_t i = 0; i < args.n; i++) vec_push(&full, args.v[i]);
	execve(binary, full.v, env.v);
	die("exec %s: %s", binary, strerror(errno));
	return LAUNCH_ERROR;
}
