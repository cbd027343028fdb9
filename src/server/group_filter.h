// A group is a saved filter over device attributes (docs/api.md "Groups"). The filter is a list of terms
// separated by spaces, all of which must hold:
//   chip=esp32  project=app  channel=stable  id=dev-*  status=accepted   (exact, or a prefix ending in '*')
//   version=1.2  version<2.0  version>=1.0  version!=1.3                 (the running version, ordered as
//                                                                         store/version.h orders releases)
//   tag=canary   tag!=lab                                                 (has / lacks the tag)
//   attr.site=berlin  attr.site!=lab                                      (an attribute; '*' prefix as above)
// The empty filter matches every device. Evaluated at update-check time: membership is dynamic.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "store/store.h"

namespace ota32::server {

struct FilterTerm {
  enum class Op { eq, ne, lt, le, gt, ge };
  std::string key;  // chip, project, channel, id, status, version, tag, attr.<name>
  Op op = Op::eq;
  std::string value;
};

struct GroupFilter {
  std::vector<FilterTerm> terms;
};

// Errors (invalid_argument) name the term: "filter term 2 'chip<esp32': chip takes only = or !=".
Result<GroupFilter> parse_group_filter(std::string_view text);

// `running_version` overrides the record's (an update check carries the freshest one); empty = the record's.
bool matches(const GroupFilter& filter, const DeviceRecord& device, std::string_view running_version = {});

}  // namespace ota32::server
