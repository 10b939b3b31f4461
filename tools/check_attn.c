/* check_attn.c — attention-only golden cases (tools/check_attn.h). */
#include "check_attn.h"

int check_attention_only(const dsv4_wsrc *src, const st_file *f, dsv4_numerics num, dsv4_taps *taps)
{
    (void)src; (void)num; (void)taps;
    return dsv4_set_error("%s: attention-only cases (the V3.2 MLA + DSA layer) need ref/mla.c, "
                          "which is not in this build yet", st_path(f));
}
