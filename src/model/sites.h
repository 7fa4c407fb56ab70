// Every site a model's forward pass calls, with its op, found without computing anything: the
// family's forward pass runs on an emitter that only infers types. Used to check what a user
// names (a placement rule, a --site filter, a fault's site) against the model before any
// work, and to list the candidates when it names nothing.
#pragma once
#include <string>
#include <vector>

#include "model/model_file.h"
#include "model/site.h"
#include "ops/op.h"

namespace tapml {

struct SiteCall {
  Site site;
  Op op;
};

// In first-call order over a two-token prefill and one decode step (which covers every site
// of both phases).
std::vector<SiteCall> model_sites(const ModelFile& model);

// The sites in a few words, for messages: "token_embd; blk.0 to blk.4 each with attn_norm,
// attn_q, ...; output_norm, output".
std::string site_list_text(const std::vector<SiteCall>& sites);

// UsageError unless `pattern` (RE2, searched) matches at least one of the sites; `what` names
// it in the message ("--site"). The empty pattern matches everything.
void check_site_pattern(const std::vector<SiteCall>& sites, const std::string& pattern,
                        const std::string& what);

}  // namespace tapml
