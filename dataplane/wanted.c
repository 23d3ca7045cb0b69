/* wanted.c: keeping the prefilter's bitmap (wanted.h) in step with the
 * ownership table the worker adopts. */
#include "wanted.h"

void sdp_wanted_adopt(struct sdp_wanted *w, const struct sdp_flow_table *t,
		      const struct sdp_owner_table *o)
{
	uint64_t epoch = o != NULL ? o->epoch : 0;
	if (w->synced && o == w->adopted && epoch == w->adopted_epoch)
		return;
	/* One pass, word by word: each word goes straight from the old
	 * table's wanted set to the new one's. The worker decides no frame
	 * during the pass, and afterwards only under o, so the invariant
	 * holds at every store: a bit the pass clears is one o does not own
	 * and no flow uses, a bit it sets is set before the first frame
	 * decided under o. */
	for (uint32_t i = 0; i < SDP_BUCKETS / 64; i++) {
		uint64_t v = t->bucket_bits[i] | (o != NULL ? o->bits[i] : 0);
		if (v != w->bits[i])
			sdp_wanted_store(w, i, v);
	}
	w->adopted = o;
	w->adopted_epoch = epoch;
	w->synced = 1;
}
