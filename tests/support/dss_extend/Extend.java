package vn.signing.dss;

import eu.europa.esig.dss.enumerations.DigestAlgorithm;
import eu.europa.esig.dss.enumerations.SignatureAlgorithm;
import eu.europa.esig.dss.enumerations.SignatureLevel;
import eu.europa.esig.dss.model.DSSDocument;
import eu.europa.esig.dss.model.FileDocument;
import eu.europa.esig.dss.model.SignatureValue;
import eu.europa.esig.dss.model.ToBeSigned;
import eu.europa.esig.dss.model.x509.CertificateToken;
import eu.europa.esig.dss.pades.PAdESSignatureParameters;
import eu.europa.esig.dss.pades.signature.PAdESService;
import eu.europa.esig.dss.service.http.commons.TimestampDataLoader;
import eu.europa.esig.dss.service.tsp.OnlineTSPSource;
import eu.europa.esig.dss.spi.validation.CommonCertificateVerifier;

import java.io.FileInputStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.KeyStore;
import java.security.PrivateKey;
import java.security.Signature;
import java.security.cert.Certificate;
import java.security.cert.X509Certificate;
import java.util.ArrayList;
import java.util.List;

/**
 * Builds a multi-signature PDF the way EU DSS 6.4 does it, for the interoperability test in
 * tests/test_modifications.py: the first signature is made at B-B and extended to the level
 * (PAdESService.extendDocument), each further one is signed at that level directly; DSS then
 * rewrites the document security store of the whole document each time.
 * Compiled into a copy of ../shared/tools/dss-validate (it uses Validate.buildVerifier).
 *
 * args: in.pdf outdir key.p12 passphrase root.pem tsaUrl n LT|LTA includeVri(true|false)
 * prints the path of each file written (one per signature).
 */
public final class Extend {
    public static void main(String[] a) throws Exception {
        Path in = Path.of(a[0]);
        Path outDir = Path.of(a[1]);
        KeyStore ks = KeyStore.getInstance("PKCS12");
        try (FileInputStream f = new FileInputStream(a[2])) {
            ks.load(f, a[3].toCharArray());
        }
        String alias = ks.aliases().nextElement();
        PrivateKey key = (PrivateKey) ks.getKey(alias, a[3].toCharArray());
        Certificate[] chainArr = ks.getCertificateChain(alias);
        CertificateToken signer = new CertificateToken((X509Certificate) chainArr[0]);
        List<CertificateToken> chain = new ArrayList<>();
        for (Certificate c : chainArr) {
            chain.add(new CertificateToken((X509Certificate) c));
        }
        CommonCertificateVerifier cv = Validate.buildVerifier(List.of(a[4]), false);
        PAdESService service = new PAdESService(cv);
        service.setTspSource(new OnlineTSPSource(a[5], new TimestampDataLoader()));
        int n = Integer.parseInt(a[6]);
        SignatureLevel level = a[7].equals("LT") ? SignatureLevel.PAdES_BASELINE_LT : SignatureLevel.PAdES_BASELINE_LTA;
        boolean vri = Boolean.parseBoolean(a[8]);
        Files.createDirectories(outDir);
        DSSDocument doc = new FileDocument(in.toFile());
        for (int i = 1; i <= n; i++) {
            PAdESSignatureParameters p = new PAdESSignatureParameters();
            p.setSignatureLevel(i == 1 ? SignatureLevel.PAdES_BASELINE_B : level);
            p.setIncludeVRIDictionary(vri);
            p.setDigestAlgorithm(DigestAlgorithm.SHA256);
            p.setSigningCertificate(signer);
            p.setCertificateChain(chain);
            ToBeSigned tbs = service.getDataToSign(doc, p);
            Signature s = Signature.getInstance("SHA256withRSA");
            s.initSign(key);
            s.update(tbs.getBytes());
            SignatureValue sv = new SignatureValue(SignatureAlgorithm.RSA_SHA256, s.sign());
            doc = service.signDocument(doc, p, sv);
            if (i == 1) {
                PAdESSignatureParameters e = new PAdESSignatureParameters();
                e.setSignatureLevel(level);
                e.setIncludeVRIDictionary(vri);
                doc = service.extendDocument(doc, e);
            }
            Path out = outDir.resolve("dss-" + a[7] + "-" + (vri ? "vri" : "novri") + "-" + i + ".pdf");
            doc.save(out.toString());
            System.out.println(out);
        }
    }
}
