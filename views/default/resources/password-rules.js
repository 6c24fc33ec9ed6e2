// Live checklist of the password rules on the update-password page (progressive enhancement: the
// server checks every rule again; without JavaScript the list is shown as plain text).
(function () {
  'use strict';
  var input = document.getElementById('password-new');
  var list = document.getElementById('kc-password-rules');
  var usernameField = document.getElementById('username');
  if (!input || !list) return;
  var username = usernameField ? usernameField.value : '';
  var count = function (value, pattern) { return (value.match(pattern) || []).length; };
  var checks = {
    minLength: function (v, n) { return Array.from(v).length >= n; },
    maxLength: function (v, n) { return Array.from(v).length <= n; },
    lowerCase: function (v, n) { return count(v, /\p{Ll}/gu) >= n; },
    upperCase: function (v, n) { return count(v, /\p{Lu}/gu) >= n; },
    digits: function (v, n) { return count(v, /\p{Nd}/gu) >= n; },
    specialChars: function (v, n) { return count(v, /[^\p{L}\p{Nd}]/gu) >= n; },
    notUsername: function (v) { return v.toLowerCase() !== username.toLowerCase(); },
    notContainsUsername: function (v) { return !username || v.toLowerCase().indexOf(username.toLowerCase()) < 0; },
    regex: function (v, pattern) {
      try { return new RegExp('^(?:' + pattern + ')$', 'u').test(v); } catch (e) { return null; }
    },
  };
  var rules = Array.prototype.slice.call(list.querySelectorAll('[data-rule]'));
  function update() {
    var value = input.value;
    rules.forEach(function (rule) {
      var check = checks[rule.getAttribute('data-rule')];
      var arg = rule.getAttribute('data-arg');
      var met = check ? check(value, /^\d+$/.test(arg) ? Number(arg) : arg) : null;
      rule.classList.toggle('kc-rule-met', met === true);
      rule.classList.toggle('kc-rule-unmet', met === false && value.length > 0);
    });
  }
  list.classList.add('kc-rules-live');
  input.addEventListener('input', update);
  update();
})();
