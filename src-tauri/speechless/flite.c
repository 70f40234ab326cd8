/* Stand-ins for the flite speech synthesizer, for the dashboard's processes only
 * (src-tauri/src/guard/speechless.rs says why and how they are used).
 *
 * libwebkit2gtk links flite's thirteen libraries for the page's speechSynthesis API, and loads
 * them at start in each of its three processes: their voice tables are relocated at load, which
 * cost the open dashboard about 15 MiB of PSS (tests/app/footprint.sh: 199.1 -> 184.5 MiB).
 * The dashboard never speaks. These are the functions WebKitGTK calls (those of its undefined
 * symbols, `nm -D --undefined-only`, that flite's libraries define); each answers "nothing
 * here" the way flite does when it fails (no voice, no wave), so a page that asked to speak would
 * find no voice. */
#include <stddef.h>

int flite_init(void) { return 0; }
int flite_add_lang(const char *name, void *lang_init, void *lex_init) {
    (void)name; (void)lang_init; (void)lex_init;
    return 0;
}
void usenglish_init(void *voice) { (void)voice; }
void *cmulex_init(void) { return NULL; }
void delete_voice(void *voice) { (void)voice; }
void delete_wave(void *wave) { (void)wave; }
void *flite_text_to_wave(const char *text, void *voice) {
    (void)text; (void)voice;
    return NULL;
}
void cst_wave_resample(void *wave, int sample_rate) { (void)wave; (void)sample_rate; }
void *register_cmu_us_awb(const char *voxdir) { (void)voxdir; return NULL; }
void *register_cmu_us_kal(const char *voxdir) { (void)voxdir; return NULL; }
void *register_cmu_us_rms(const char *voxdir) { (void)voxdir; return NULL; }
void *register_cmu_us_slt(const char *voxdir) { (void)voxdir; return NULL; }
