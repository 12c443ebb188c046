internal import COpenSSL
import Glibc

extension TLSError {
    /// The one conversion of OpenSSL's failures into text: error codes (`ERR_get_error` values, oldest
    /// first) and, for a failed certificate verification, the verification result, which completes
    /// OpenSSL's "certificate verify failed" (`X509_verify_cert_error_string`). Repeated texts are
    /// given once.
    package init(operation: String, errorCodes: [UInt], verifyResult: Int) {
        _ = openSSLInitialized  // loads the texts
        var reasons: [String] = []
        for code in errorCodes {
            var text = Self.reasonText(of: code)
            if verifyResult != Int(X509_V_OK), ERR_GET_LIB(code) == ERR_LIB_SSL,
                ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED
            {
                text += ": " + String(cString: X509_verify_cert_error_string(verifyResult))
            }
            if reasons.last != text {
                reasons.append(text)
            }
        }
        self.init(operation: operation, reasons: reasons)
    }

    /// Empties this thread's OpenSSL error queue into an error for `operation`.
    static func drainingErrorQueue(operation: String) -> TLSError {
        var codes: [UInt] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            codes.append(code)
        }
        return TLSError(operation: operation, errorCodes: codes, verifyResult: Int(X509_V_OK))
    }

    /// OpenSSL's reason text; a system error's text for a failed system call.
    private static func reasonText(of code: UInt) -> String {
        if ERR_GET_LIB(code) == ERR_LIB_SYS {
            return String(cString: strerror(ERR_GET_REASON(code)))
        }
        if let reason = ERR_reason_error_string(code) {
            return String(cString: reason)
        }
        // Codes without a registered text still get "error:0A000086:lib(20)::reason(134)".
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: 256) { buffer in
            ERR_error_string_n(code, buffer.baseAddress, buffer.count)
            return String(cString: buffer.baseAddress!)
        }
    }
}
