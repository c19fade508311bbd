// The setup page's hand-over to GitHub: the manifest form goes on by itself. Without
// scripts the button does the same.
"use strict";

(function () {
  var form = document.getElementById("to-github");
  if (form) form.submit();
})();
