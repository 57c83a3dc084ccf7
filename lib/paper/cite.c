/* cite.c: arXiv and Semantic Scholar answers into papers, papers into BibTeX. */
#include "paper/cite.h"

#include <ctype.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ATOM_NS "http://www.w3.org/2005/Atom"
#define ARXIV_NS "http://arxiv.org/schemas/atom"

void cb_cite_cfg_init(cb_cite_cfg *c) {
    memset(c, 0, sizeof *c);
    snprintf(c->arxiv_url, sizeof c->arxiv_url, "http://export.arxiv.org/api/query");
    snprintf(c->s2_url, sizeof c->s2_url, "https://api.semanticscholar.org/graph/v1");
    c->max_results = 10;
    c->prefer_recent = 1;
    c->recent_years = 3;
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    c->this_year = tm.tm_year + 1900;
    cb_http_opts_default(&c->http);
    c->http.timeout_ms = 30000;
}

/* whitespace runs to one space, trimmed */
static char *squeeze(const char *s) {
    char *r = malloc(strlen(s) + 1), *w = r;
    if (!r) return NULL;
    int space = 0;
    for (; *s; s++) {
        if (isspace((unsigned char)*s)) { space = w != r; continue; }
        if (space) *w++ = ' ';
        space = 0;
        *w++ = *s;
    }
    *w = 0;
    return r;
}

static int is_el(xmlNode *n, const char *ns, const char *name) {
    return n->type == XML_ELEMENT_NODE && xmlStrcmp(n->name, (const xmlChar *)name) == 0 && n->ns &&
           xmlStrcmp(n->ns->href, (const xmlChar *)ns) == 0;
}

static char *text_of(xmlNode *n) {
    xmlChar *t = xmlNodeGetContent(n);
    char *r = squeeze(t ? (const char *)t : "");
    xmlFree(t);
    return r;
}

static void set_text(json_t *o, const char *key, char *s) {
    if (s && s[0]) json_object_set_new(o, key, json_string(s));
    free(s);
}

int cb_cite_parse_arxiv(const char *xml, size_t len, json_t **papers, cb_error *e) {
    *papers = NULL;
    xmlDoc *doc = xmlReadMemory(xml, (int)len, "arxiv.xml", NULL,
                                XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (!doc) return cb_fail(e, CB_E_INVALID, "arXiv", "arXiv: the answer is not XML");
    xmlNode *root = xmlDocGetRootElement(doc);
    if (!root || !is_el(root, ATOM_NS, "feed")) {
        xmlFreeDoc(doc);
        return cb_fail(e, CB_E_INVALID, "arXiv", "arXiv: the answer is not an Atom feed");
    }
    json_t *list = json_array();
    for (xmlNode *en = root->children; en; en = en->next) {
        if (!is_el(en, ATOM_NS, "entry")) continue;
        json_t *p = json_pack("{s:s,s:[]}", "source", "arxiv", "authors");
        char *id = NULL, *title = NULL;
        for (xmlNode *c = en->children; c; c = c->next) {
            if (is_el(c, ATOM_NS, "id")) { free(id); id = text_of(c); }
            else if (is_el(c, ATOM_NS, "title")) { free(title); title = text_of(c); }
            else if (is_el(c, ATOM_NS, "published")) {
                char *t = text_of(c);
                if (t && strlen(t) >= 4 && isdigit((unsigned char)t[0])) json_object_set_new(p, "year", json_integer(atoi(t)));
                free(t);
            } else if (is_el(c, ATOM_NS, "author")) {
                for (xmlNode *a = c->children; a; a = a->next)
                    if (is_el(a, ATOM_NS, "name")) {
                        char *nm = text_of(a);
                        if (nm && nm[0]) json_array_append_new(json_object_get(p, "authors"), json_string(nm));
                        free(nm);
                    }
            } else if (is_el(c, ARXIV_NS, "doi")) set_text(p, "doi", text_of(c));
            else if (is_el(c, ARXIV_NS, "journal_ref")) set_text(p, "venue", text_of(c));
        }
        const char *abs = id ? strstr(id, "/abs/") : NULL;
        if (id && strstr(id, "/api/errors")) {
            char msg[300];
            snprintf(msg, sizeof msg, "%s", title ? title : "error");
            free(id); free(title); json_decref(p); json_decref(list); xmlFreeDoc(doc);
            return cb_fail(e, CB_E_INVALID, "arXiv", "arXiv answered with an error entry: %s", msg);
        }
        if (!abs || !title || !title[0]) { free(id); free(title); json_decref(p); continue; }
        char eprint[64];
        snprintf(eprint, sizeof eprint, "%s", abs + 5);
        char *v = strrchr(eprint, 'v');
        if (v && v > eprint && isdigit((unsigned char)v[1])) *v = 0;
        char pid[80];
        snprintf(pid, sizeof pid, "arxiv:%s", eprint);
        json_object_set_new(p, "id", json_string(pid));
        json_object_set_new(p, "eprint", json_string(eprint));
        json_object_set_new(p, "title", json_string(title));
        json_object_set_new(p, "url", json_string(id));
        if (!json_object_get(p, "year")) json_object_set_new(p, "year", json_null());
        free(id);
        free(title);
        json_array_append_new(list, p);
    }
    xmlFreeDoc(doc);
    *papers = list;
    return CB_OK;
}

int cb_cite_parse_s2(const char *text, size_t len, json_t **papers, cb_error *e) {
    *papers = NULL;
    json_error_t je;
    json_t *doc = json_loadb(text, len, 0, &je);
    if (!doc) return cb_fail(e, CB_E_INVALID, "Semantic Scholar", "Semantic Scholar: the answer is not JSON (line %d: %s)", je.line, je.text);
    json_t *data = json_object_get(doc, "data");
    if (!json_is_array(data)) {
        json_t *total = json_object_get(doc, "total");
        if (json_is_integer(total) && json_integer_value(total) == 0) { json_decref(doc); *papers = json_array(); return CB_OK; }
        json_decref(doc);
        return cb_fail(e, CB_E_INVALID, "Semantic Scholar", "Semantic Scholar: the answer has no \"data\" list");
    }
    json_t *list = json_array();
    size_t i;
    json_t *d;
    json_array_foreach(data, i, d) {
        const char *pid = json_string_value(json_object_get(d, "paperId"));
        const char *title = json_string_value(json_object_get(d, "title"));
        if (!pid || !title || !title[0]) continue;
        char *t = squeeze(title);
        char id[128];
        snprintf(id, sizeof id, "s2:%s", pid);
        json_t *p = json_pack("{s:s,s:s,s:s,s:[]}", "source", "semantic_scholar", "id", id, "title", t, "authors");
        free(t);
        json_t *year = json_object_get(d, "year");
        json_object_set_new(p, "year", json_is_integer(year) ? json_integer(json_integer_value(year)) : json_null());
        size_t j;
        json_t *a;
        json_array_foreach(json_object_get(d, "authors"), j, a) {
            const char *nm = json_string_value(json_object_get(a, "name"));
            if (nm && nm[0]) json_array_append_new(json_object_get(p, "authors"), json_string(nm));
        }
        json_t *ext = json_object_get(d, "externalIds");
        const char *ax = json_string_value(json_object_get(ext, "ArXiv"));
        const char *doi = json_string_value(json_object_get(ext, "DOI"));
        const char *venue = json_string_value(json_object_get(d, "venue"));
        const char *url = json_string_value(json_object_get(d, "url"));
        if (ax) json_object_set_new(p, "eprint", json_string(ax));
        if (doi) json_object_set_new(p, "doi", json_string(doi));
        if (venue && venue[0]) json_object_set_new(p, "venue", json_string(venue));
        if (url) json_object_set_new(p, "url", json_string(url));
        json_array_append_new(list, p);
    }
    json_decref(doc);
    *papers = list;
    return CB_OK;
}

/* recent papers first (stable), when the configuration prefers them */
static json_t *ordered(const cb_cite_cfg *c, json_t *papers) {
    if (!c->prefer_recent) return papers;
    json_t *out = json_array();
    for (int pass = 0; pass < 2; pass++) {
        size_t i;
        json_t *p;
        json_array_foreach(papers, i, p) {
            json_int_t y = json_integer_value(json_object_get(p, "year"));
            int recent = y > 0 && y >= c->this_year - c->recent_years;
            if (recent == (pass == 0)) json_array_append(out, p);
        }
    }
    json_decref(papers);
    return out;
}

int cb_cite_search(const cb_cite_cfg *c, const char *source, const char *query, json_t **papers, cb_error *e) {
    *papers = NULL;
    char *q = cb_url_escape(query);
    if (!q) return cb_fail(e, CB_E_RUNTIME, "", "out of memory");
    char url[2048];
    cb_http_opts o = c->http;
    int arxiv = strcmp(source, "arxiv") == 0;
    if (arxiv) {
        snprintf(url, sizeof url, "%s?search_query=all:%s&start=0&max_results=%d%s", c->arxiv_url, q, c->max_results,
                 c->prefer_recent ? "&sortBy=relevance" : "");
        o.what = "arXiv";
    } else {
        snprintf(url, sizeof url, "%s/paper/search?query=%s&limit=%d&fields=title,authors,year,externalIds,venue,url",
                 c->s2_url, q, c->max_results);
        o.what = "Semantic Scholar";
        /* a key raises Semantic Scholar's rate limit; the chat endpoint's key never goes here */
        const char *key = getenv("SEMANTIC_SCHOLAR_API_KEY");
        if (key && key[0]) {
            o.bearer_key = key;
            o.key_header = "x-api-key";
        }
    }
    free(q);
    char *resp = NULL;
    size_t n = 0;
    CB_TRY(cb_http_request(url, NULL, &o, &resp, &n, e));
    int rc = arxiv ? cb_cite_parse_arxiv(resp, n, papers, e) : cb_cite_parse_s2(resp, n, papers, e);
    free(resp);
    if (rc == CB_OK) *papers = ordered(c, *papers);
    return rc;
}

/* ---- BibTeX ---------------------------------------------------------------- */

void cb_bib_init(cb_bib *b) { b->entries = json_array(); }
void cb_bib_free(cb_bib *b) { json_decref(b->entries); b->entries = NULL; }
size_t cb_bib_count(const cb_bib *b) { return json_array_size(b->entries); }

static void norm_title(const char *t, char *out, size_t n) {
    size_t w = 0;
    for (; *t && w + 1 < n; t++)
        if (isalnum((unsigned char)*t)) out[w++] = (char)tolower((unsigned char)*t);
    out[w] = 0;
}

/* value of field `name` inside one entry's text: {...} or "..." */
static void field_value(const char *entry, const char *name, char *out, size_t n) {
    out[0] = 0;
    size_t ln = strlen(name);
    for (const char *p = entry; (p = strchr(p, '\n')); p++) {
        const char *q = p + 1;
        while (*q == ' ' || *q == '\t') q++;
        if (strncasecmp(q, name, ln) != 0) continue;
        q += ln;
        while (*q == ' ') q++;
        if (*q != '=') continue;
        q++;
        while (*q == ' ') q++;
        char close = *q == '{' ? '}' : *q == '"' ? '"' : 0;
        if (!close) return;
        q++;
        size_t w = 0;
        int depth = 0;
        for (; *q && w + 1 < n; q++) {
            if (close == '}' && *q == '{') depth++;
            else if (*q == close && depth == 0) break;
            else if (close == '}' && *q == '}') depth--;
            out[w++] = *q;
        }
        out[w] = 0;
        return;
    }
}

static void add_entry(cb_bib *b, const char *key, const char *text) {
    char title[1024], tn[1024], eprint[128], doi[256];
    field_value(text, "title", title, sizeof title);
    norm_title(title, tn, sizeof tn);
    field_value(text, "eprint", eprint, sizeof eprint);
    field_value(text, "doi", doi, sizeof doi);
    json_array_append_new(b->entries, json_pack("{s:s,s:s,s:s,s:s,s:s}", "key", key, "title_norm", tn, "eprint",
                                                eprint, "doi", doi, "text", text));
}

int cb_bib_load(cb_bib *b, const char *path, cb_error *e) {
    FILE *f = fopen(path, "rb");
    if (!f) return CB_OK;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (!s || fread(s, 1, (size_t)n, f) != (size_t)n) { free(s); fclose(f); return cb_fail(e, CB_E_IO, path, "cannot read"); }
    fclose(f);
    s[n] = 0;
    char *p = s;
    while ((p = strchr(p, '@'))) {
        char *brace = strchr(p, '{'), *comma = brace ? strchr(brace, ',') : NULL;
        if (!brace || !comma) break;
        /* the entry ends where its braces balance */
        int depth = 0;
        char *q = brace;
        for (; *q; q++) {
            if (*q == '{') depth++;
            else if (*q == '}' && --depth == 0) break;
        }
        if (!*q) break;
        char key[256];
        size_t kl = (size_t)(comma - brace - 1);
        if (kl >= sizeof key) kl = sizeof key - 1;
        memcpy(key, brace + 1, kl);
        key[kl] = 0;
        char *k = key;
        while (isspace((unsigned char)*k)) k++;
        for (char *t = k + strlen(k); t > k && isspace((unsigned char)t[-1]);) *--t = 0;
        if (q[1] == '\n') q++; /* the entry's own line end, as cb_bib_add writes it */
        char save = q[1];
        q[1] = 0;
        add_entry(b, k, p);
        q[1] = save;
        p = q + 1;
    }
    free(s);
    return CB_OK;
}

int cb_bib_has(const cb_bib *b, const char *key) {
    size_t i;
    json_t *en;
    json_array_foreach(b->entries, i, en) if (strcmp(json_string_value(json_object_get(en, "key")), key) == 0) return 1;
    return 0;
}

char *cb_tex_escape(const char *s) {
    size_t n = strlen(s);
    char *r = malloc(n * 16 + 1), *w = r;
    if (!r) return NULL;
    for (; *s; s++) {
        const char *rep = NULL;
        switch (*s) {
        case '&': rep = "\\&"; break;
        case '%': rep = "\\%"; break;
        case '$': rep = "\\$"; break;
        case '#': rep = "\\#"; break;
        case '_': rep = "\\_"; break;
        case '{': rep = "\\{"; break;
        case '}': rep = "\\}"; break;
        case '~': rep = "\\textasciitilde{}"; break;
        case '^': rep = "\\textasciicircum{}"; break;
        case '\\': rep = "\\textbackslash{}"; break;
        default: break;
        }
        if (rep) { size_t l = strlen(rep); memcpy(w, rep, l); w += l; }
        else if ((unsigned char)*s >= 0x20 || *s == '\n') *w++ = *s;
    }
    *w = 0;
    return r;
}

int cb_bib_add(cb_bib *b, const json_t *paper, char *key_out, size_t key_n) {
    const char *title = json_string_value(json_object_get(paper, "title"));
    const char *eprint = json_string_value(json_object_get(paper, "eprint"));
    const char *doi = json_string_value(json_object_get(paper, "doi"));
    char tn[1024];
    norm_title(title ? title : "", tn, sizeof tn);
    size_t i;
    json_t *en;
    json_array_foreach(b->entries, i, en) {
        const char *k = json_string_value(json_object_get(en, "key"));
        const char *ep = json_string_value(json_object_get(en, "eprint"));
        const char *dd = json_string_value(json_object_get(en, "doi"));
        const char *tt = json_string_value(json_object_get(en, "title_norm"));
        if ((eprint && ep && ep[0] && strcmp(eprint, ep) == 0) || (doi && dd && dd[0] && strcasecmp(doi, dd) == 0) ||
            (tn[0] && tt && strcmp(tn, tt) == 0)) {
            snprintf(key_out, key_n, "%s", k);
            return 0;
        }
    }
    /* key: first author's last name, year, first long word of the title */
    json_t *authors = json_object_get(paper, "authors");
    const char *first = json_string_value(json_array_get(authors, 0));
    char last[64] = "anon", word[64] = "paper";
    if (first) {
        const char *sp = strrchr(first, ' ');
        const char *ln = sp ? sp + 1 : first;
        size_t w = 0;
        for (; *ln && w + 1 < sizeof last; ln++) if (isalpha((unsigned char)*ln)) last[w++] = (char)tolower((unsigned char)*ln);
        last[w] = 0;
        if (!w) snprintf(last, sizeof last, "anon");
    }
    for (const char *t = title ? title : ""; *t;) {
        while (*t && !isalpha((unsigned char)*t)) t++;
        const char *s = t;
        while (isalpha((unsigned char)*t)) t++;
        if (t - s >= 4) {
            size_t w = 0;
            for (; s < t && w + 1 < sizeof word; s++) word[w++] = (char)tolower((unsigned char)*s);
            word[w] = 0;
            break;
        }
    }
    json_int_t year = json_integer_value(json_object_get(paper, "year"));
    char key[240];
    snprintf(key, sizeof key, "%s%lld%s", last, (long long)year, word);
    key[200] = 0;
    char base[240];
    snprintf(base, sizeof base, "%s", key);
    for (int k = 0; cb_bib_has(b, key); k++) snprintf(key, sizeof key, "%.200s%c", base, 'b' + k % 25);

    char *et = cb_tex_escape(title ? title : "");
    size_t cap = 4096 + strlen(et);
    json_array_foreach(authors, i, en) cap += 16 * strlen(json_string_value(en)) + 8;
    char *text = malloc(cap);
    size_t w = 0;
    const char *type = !eprint && json_object_get(paper, "venue") ? "inproceedings" : "misc";
    w += (size_t)snprintf(text + w, cap - w, "@%s{%s,\n  title = {{%s}},\n  author = {", type, key, et);
    free(et);
    json_array_foreach(authors, i, en) {
        char *a = cb_tex_escape(json_string_value(en));
        w += (size_t)snprintf(text + w, cap - w, "%s%s", i ? " and " : "", a);
        free(a);
    }
    if (json_array_size(authors) == 0) w += (size_t)snprintf(text + w, cap - w, "Anonymous");
    w += (size_t)snprintf(text + w, cap - w, "},\n");
    if (year > 0) w += (size_t)snprintf(text + w, cap - w, "  year = {%lld},\n", (long long)year);
    if (eprint) w += (size_t)snprintf(text + w, cap - w, "  eprint = {%s},\n  archivePrefix = {arXiv},\n", eprint);
    const char *venue = json_string_value(json_object_get(paper, "venue"));
    if (venue && !eprint) {
        char *v = cb_tex_escape(venue);
        w += (size_t)snprintf(text + w, cap - w, "  booktitle = {%s},\n", v);
        free(v);
    } else if (venue) {
        char *v = cb_tex_escape(venue);
        w += (size_t)snprintf(text + w, cap - w, "  howpublished = {%s},\n", v);
        free(v);
    }
    if (doi) w += (size_t)snprintf(text + w, cap - w, "  doi = {%s},\n", doi);
    const char *src = json_string_value(json_object_get(paper, "source"));
    const char *pid = json_string_value(json_object_get(paper, "id"));
    w += (size_t)snprintf(text + w, cap - w, "  note = {Retrieved from %s (%s)}\n}\n",
                          src && strcmp(src, "arxiv") == 0 ? "arXiv" : "Semantic Scholar", pid ? pid : "");
    add_entry(b, key, text);
    free(text);
    snprintf(key_out, key_n, "%s", key);
    return 1;
}

char *cb_bib_text(const cb_bib *b) {
    size_t cap = 64, i;
    json_t *en;
    json_array_foreach(b->entries, i, en) cap += strlen(json_string_value(json_object_get(en, "text"))) + 2;
    char *s = malloc(cap), *w = s;
    if (!s) return NULL;
    *w = 0;
    json_array_foreach(b->entries, i, en) {
        const char *t = json_string_value(json_object_get(en, "text"));
        w += sprintf(w, "%s%s", i ? "\n" : "", t);
    }
    return s;
}
