/*
 * A fake libnvidia-ml.so.1 for tests: the real nvml-wrapper code path runs against it.
 * Every call re-reads a script file (path in $FAKE_NVML_SCRIPT) of key=value lines; see README.md.
 * Build: gcc -shared -fPIC -O2 -o libnvidia-ml.so.1 fake_nvml.c
 * Windows (nvml.dll, for the tests under Wine): x86_64-w64-mingw32-gcc -shared -O2 -o nvml.dll fake_nvml.c
 * Build with -DOMIT_PROCESSES to leave out the per-process symbols (FailedToLoadSymbol).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#ifdef _WIN32
#include <windows.h>
#endif

typedef int nvmlReturn_t;
typedef struct fake_device *nvmlDevice_t;
struct fake_device { int index; };
static struct fake_device devices[8] = {{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}};

enum { OK = 0, UNINITIALIZED = 1, INVALID_ARG = 2, NOT_SUPPORTED = 3, NO_PERMISSION = 4,
       INSUFFICIENT_SIZE = 7, DRIVER_NOT_LOADED = 9, UNKNOWN = 999 };

/* NVML_VALUE_NOT_AVAILABLE, as an unsigned long long. */
#define NOT_AVAILABLE 0xFFFFFFFFFFFFFFFFULL

typedef struct { unsigned int version; unsigned long long total, reserved, free, used; } nvmlMemory_v2_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct { unsigned int pid; unsigned long long usedGpuMemory; unsigned int gpuInstanceId, computeInstanceId; } nvmlProcessInfo_t;

#define MAX_LINES 256
static char lines[MAX_LINES][512];
static int nlines;
static double age; /* seconds since the script was written: drives "rising" values */

static void load(void) {
    nlines = 0;
#ifdef _WIN32
    /* The C runtime's getenv sees the environment as it was at start; the tests set the
     * variable later, through SetEnvironmentVariableW. */
    static char buf[1024];
    DWORD n = GetEnvironmentVariableA("FAKE_NVML_SCRIPT", buf, sizeof buf);
    const char *path = (n > 0 && n < sizeof buf) ? buf : NULL;
#else
    const char *path = getenv("FAKE_NVML_SCRIPT");
#endif
    if (!path) return;
    FILE *f = fopen(path, "r");
    if (!f) return;
#ifdef _WIN32
    WIN32_FILE_ATTRIBUTE_DATA attr;
    if (GetFileAttributesExA(path, GetFileExInfoStandard, &attr)) {
        FILETIME now;
        GetSystemTimeAsFileTime(&now);
        ULARGE_INTEGER a, b;
        a.LowPart = attr.ftLastWriteTime.dwLowDateTime; a.HighPart = attr.ftLastWriteTime.dwHighDateTime;
        b.LowPart = now.dwLowDateTime; b.HighPart = now.dwHighDateTime;
        age = (double)(b.QuadPart - a.QuadPart) / 1e7; /* 100 ns units */
    }
#else
    struct stat st;
    if (fstat(fileno(f), &st) == 0) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        age = (now.tv_sec - st.st_mtim.tv_sec) + (now.tv_nsec - st.st_mtim.tv_nsec) / 1e9;
    }
#endif
    while (nlines < MAX_LINES && fgets(lines[nlines], sizeof lines[0], f)) {
        lines[nlines][strcspn(lines[nlines], "\r\n")] = 0;
        if (lines[nlines][0] && lines[nlines][0] != '#') nlines++;
    }
    fclose(f);
}

static const char *get(const char *key) {
    size_t k = strlen(key);
    for (int i = 0; i < nlines; i++)
        if (!strncmp(lines[i], key, k) && lines[i][k] == '=') return lines[i] + k + 1;
    return NULL;
}

static const char *dget(int dev, const char *key) {
    char full[64];
    snprintf(full, sizeof full, "gpu%d.%s", dev, key);
    return get(full);
}

/* An injected error for `call` ("error.<call>=not_supported|no_permission|unknown"). */
static nvmlReturn_t injected(const char *call) {
    char key[96];
    snprintf(key, sizeof key, "error.%s", call);
    const char *v = get(key);
    if (!v) return OK;
    if (!strcmp(v, "not_supported")) return NOT_SUPPORTED;
    if (!strcmp(v, "no_permission")) return NO_PERMISSION;
    if (!strcmp(v, "driver_not_loaded")) return DRIVER_NOT_LOADED;
    return UNKNOWN;
}

static int initialized;

nvmlReturn_t nvmlInit_v2(void) {
    load();
    const char *v = get("init");
    if (v && !strcmp(v, "driver_not_loaded")) return DRIVER_NOT_LOADED;
    if (v && !strcmp(v, "no_permission")) return NO_PERMISSION;
    initialized = 1;
    return OK;
}
nvmlReturn_t nvmlInit(void) { return nvmlInit_v2(); }
nvmlReturn_t nvmlShutdown(void) { initialized = 0; return OK; }

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case OK: return "Success";
    case NOT_SUPPORTED: return "Not Supported";
    case NO_PERMISSION: return "Insufficient Permissions";
    case DRIVER_NOT_LOADED: return "Driver Not Loaded";
    default: return "Unknown Error";
    }
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length) {
    snprintf(version, length, "550.00-fake");
    return OK;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialized) return UNINITIALIZED;
    load();
    const char *v = get("count");
    *count = v ? (unsigned)atoi(v) : 0;
    if (*count > 8) *count = 8;
    return injected("count");
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!initialized) return UNINITIALIZED;
    if (index >= 8) return INVALID_ARG;
    *device = &devices[index];
    return OK;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t d, char *name, unsigned int length) {
    load();
    const char *v = dget(d->index, "name");
    snprintf(name, length, "%s", v ? v : "Fake GPU");
    return injected("name");
}

/* "base" or "base+rate" (bytes, bytes per second since the script was written). */
static unsigned long long rising(const char *v) {
    if (!v) return 0;
    char *end;
    unsigned long long base = strtoull(v, &end, 10);
    if (*end == '+') base += (unsigned long long)(strtod(end + 1, NULL) * age);
    return base;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo_v2(nvmlDevice_t d, nvmlMemory_v2_t *m) {
    load();
    if (m->version != (unsigned)(sizeof(nvmlMemory_v2_t) | (2u << 24))) return INVALID_ARG;
    nvmlReturn_t e = injected("memory");
    if (e) return e;
    m->total = rising(dget(d->index, "total"));
    m->used = rising(dget(d->index, "used"));
    if (m->used > m->total) m->used = m->total;
    m->free = m->total - m->used;
    m->reserved = 0;
    return OK;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t d, nvmlUtilization_t *u) {
    load();
    nvmlReturn_t e = injected("utilization");
    if (e) return e;
    const char *v = dget(d->index, "util");
    u->gpu = v ? (unsigned)atoi(v) : 0;
    u->memory = u->gpu / 2;
    return OK;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t d, int sensor, unsigned int *t) {
    (void)sensor;
    load();
    nvmlReturn_t e = injected("temperature");
    if (e) return e;
    const char *v = dget(d->index, "temp");
    *t = v ? (unsigned)atoi(v) : 40;
    return OK;
}

#ifndef OMIT_PROCESSES
/* "pid:bytes[+rate],pid:bytes" */
static nvmlReturn_t processes(nvmlDevice_t d, const char *key, unsigned int *count, nvmlProcessInfo_t *infos) {
    load();
    char call[32];
    snprintf(call, sizeof call, "%s", key);
    nvmlReturn_t e = injected(call);
    if (e) return e;
    const char *v = dget(d->index, key);
    nvmlProcessInfo_t found[32];
    unsigned n = 0;
    while (v && *v && n < 32) {
        char *end;
        found[n].pid = (unsigned)strtoul(v, &end, 10);
        if (*end != ':') break;
        /* Under the Windows driver model (WDDM) NVML lists the processes but reports their
         * memory as NVML_VALUE_NOT_AVAILABLE: "driver_model=wddm" does the same. */
        const char *model = get("driver_model");
        found[n].usedGpuMemory = (model && !strcmp(model, "wddm")) ? NOT_AVAILABLE : rising(end + 1);
        found[n].gpuInstanceId = 0xFFFFFFFF;
        found[n].computeInstanceId = 0xFFFFFFFF;
        n++;
        v = strchr(end, ',');
        if (v) v++;
    }
    if (!infos || *count < n) {
        *count = n;
        return n ? INSUFFICIENT_SIZE : OK;
    }
    memcpy(infos, found, n * sizeof *infos);
    *count = n;
    return OK;
}

nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t d, unsigned int *count, nvmlProcessInfo_t *infos) {
    return processes(d, "compute", count, infos);
}
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t d, unsigned int *count, nvmlProcessInfo_t *infos) {
    return processes(d, "graphics", count, infos);
}
#endif
