// Submits the SAML HTTP-POST binding form as soon as the page loads.
document.getElementById('kc-saml-post')?.submit();
