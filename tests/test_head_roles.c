// tests/test_head_roles.c: the scores of --find-heads (head_roles) and the
// value weighting of --value-weighted (weight_by_values), on attention built
// by hand so that every expected value follows exactly from the construction.
#define RUN_NO_MAIN
#include "../run.c"

static int passed, failed;

static void check(const char *what, int ok, const char *fmt, ...) {
    if (ok) { passed++; return; }
    failed++;
    va_list ap;
    va_start(ap, fmt);
    printf("  FAIL %s: ", what);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

static void near(const char *what, float got, double want) {
    check(what, fabs(got - want) < 1e-6, "got %.9g, want %.9g", got, want);
}

static AttentionLog *log_new(int L, int H, int n) {
    Config c = {0};
    c.n_layer = L;
    c.n_head = H;
    return attention_log_new(&c, n);
}

int main(void) {
    // A random sequence of 5 tokens, repeated: 10 11 12 13 14 10 11 12 13 14.
    enum { N = 5, n = 2 * N };
    int ids[n];
    for (int i = 0; i < n; i++) ids[i] = 10 + i % N;
    AttentionLog *g = log_new(1, 4, n);
    for (int i = 0; i < n; i++) {
        attention_row(g, 0, 0, i)[i ? i - 1 : 0] = 1;       // head 0: the previous token
        attention_row(g, 0, 1, i)[i >= N ? i - N + 1 : 0] = 1;  // head 1: induction (first copy: the first token)
        attention_row(g, 0, 2, i)[0] = 1;                    // head 2: the first token
        for (int j = 0; j <= i; j++) attention_row(g, 0, 3, i)[j] = 1.0f / (i + 1);  // head 3: uniform
    }
    HeadRoles r0 = head_roles(g, 0, 0, ids, n), r1 = head_roles(g, 0, 1, ids, n);
    HeadRoles r2 = head_roles(g, 0, 2, ids, n), r3 = head_roles(g, 0, 3, ids, n);
    // queries 1..9 count for prev and sink; the second copy (5..9) for induction
    near("previous-token head: prev", r0.prev, 1.0);
    near("previous-token head: induction", r0.induction, 0.0);
    near("previous-token head: sink (query 1 only)", r0.sink, 1.0 / 9);
    near("induction head: induction", r1.induction, 1.0);
    near("induction head: prev (query 1 only)", r1.prev, 1.0 / 9);
    near("induction head: sink (queries 1..4)", r1.sink, 4.0 / 9);
    near("sink head: sink", r2.sink, 1.0);
    near("sink head: prev (query 1 only)", r2.prev, 1.0 / 9);
    near("sink head: induction", r2.induction, 0.0);
    double prev = 0, ind = 0;
    for (int i = 1; i < n; i++) prev += 1.0 / (i + 1);
    for (int i = N; i < n; i++) ind += 1.0 / (i + 1);
    near("uniform head: prev = mean 1/(i+1)", r3.prev, prev / 9);
    near("uniform head: sink = prev", r3.sink, prev / 9);
    near("uniform head: induction = mean over the second copy of 1/(i+1)", r3.induction, ind / N);
    check("roles named", !strcmp(head_role(r0), "previous token") && !strcmp(head_role(r1), "induction") &&
          !strcmp(head_role(r2), "sink") && !strcmp(head_role(r3), "-"), "%s %s %s %s", head_role(r0),
          head_role(r1), head_role(r2), head_role(r3));
    float s;
    check("ranked: induction, previous, sink, none", role_rank(r1, &s) == 0 && role_rank(r0, &s) == 1 &&
          role_rank(r2, &s) == 2 && role_rank(r3, &s) == 3, "");
    attention_log_free(g);

    // A token seen twice before: the induction target is after its latest copy.
    // ids 7 8 7 9 7: query 2 (7) -> key 1, query 4 (7) -> key 3 (not 1).
    int ids2[5] = {7, 8, 7, 9, 7};
    g = log_new(1, 2, 5);
    for (int i = 0; i < 5; i++) {
        attention_row(g, 0, 0, i)[i == 2 ? 1 : i == 4 ? 3 : 0] = 1;  // after the latest copy
        attention_row(g, 0, 1, i)[i == 2 || i == 4 ? 1 : 0] = 1;     // after the first copy
    }
    near("induction reads after the latest copy", head_roles(g, 0, 0, ids2, 5).induction, 1.0);
    near("after an older copy counts half here", head_roles(g, 0, 1, ids2, 5).induction, 0.5);
    attention_log_free(g);
    // A token right after itself: the token after its copy is itself, not counted.
    int ids3[3] = {5, 5, 6};
    g = log_new(1, 1, 3);
    for (int i = 0; i < 3; i++) attention_row(g, 0, 0, i)[i] = 1;
    near("no earlier copy with a token between: induction 0", head_roles(g, 0, 0, ids3, 3).induction, 0.0);
    near("a head on itself: prev 0", head_roles(g, 0, 0, ids3, 2).prev, 0.0);
    attention_log_free(g);

    // --value-weighted: 2 query heads share 1 key/value head (hd = 2) whose
    // values at positions 0, 1, 2 are (3, 4), (0, 0), (1, 0): norms 5, 0, 1.
    Model m;
    memset(&m, 0, sizeof m);
    m.config.n_layer = 1;
    m.config.n_head = 2;
    m.config.n_kv_head = 1;
    m.config.n_embd = 4;
    m.state.seq_len = 3;
    float values[6] = {3, 4, 0, 0, 1, 0};
    m.state.v_cache = values;
    g = log_new(1, 2, 3);
    for (int i = 0; i < 3; i++)
        for (int j = 0; j <= i; j++) attention_row(g, 0, 0, i)[j] = 1.0f / (i + 1);
    float h1[3] = {0.5f, 0.25f, 0.25f};
    attention_row(g, 0, 1, 0)[0] = 1;
    attention_row(g, 0, 1, 1)[0] = 0.5f;
    attention_row(g, 0, 1, 1)[1] = 0.5f;
    memcpy(attention_row(g, 0, 1, 2), h1, sizeof h1);
    weight_by_values(g, &m, 3);
    near("value-weighted: row 0 stays 1", attention_row(g, 0, 0, 0)[0], 1.0);
    near("value-weighted: a zero value gets no weight", attention_row(g, 0, 0, 1)[1], 0.0);
    near("value-weighted: (1/2 5, 1/2 0) renormalised", attention_row(g, 0, 0, 1)[0], 1.0);
    near("value-weighted: uniform over norms 5, 0, 1: 5/6", attention_row(g, 0, 0, 2)[0], 5.0 / 6);
    near("value-weighted: uniform over norms 5, 0, 1: 1/6", attention_row(g, 0, 0, 2)[2], 1.0 / 6);
    near("value-weighted: (.5 5, .25 0, .25 1) / 2.75, key 0", attention_row(g, 0, 1, 2)[0], 2.5 / 2.75);
    near("value-weighted: (.5 5, .25 0, .25 1) / 2.75, key 2", attention_row(g, 0, 1, 2)[2], 0.25 / 2.75);
    attention_log_free(g);

    printf("head_roles: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
